// meshfs init, meshfs key export|passwd: making a volume's keys and config,
// exporting them for another machine, changing the passphrase.
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <iostream>

#include "command.h"
#include "meshfs/fs/keys.h"
#include "meshfs/fs/volume.h"
#include "passphrase.h"

namespace meshfs::cli {
namespace {

namespace stdfs = std::filesystem;

constexpr size_t kMaxInputFile = 1 << 20;

struct InitOptions {
  std::string volume, peers, passphrase_file, key_file, import_file, slice_size;
  int replicas = 3;
  CLI::Option* replicas_opt = nullptr;
  CLI::Option* slice_opt = nullptr;
  CLI::Option* peers_opt = nullptr;
};

Result<std::string> ReadSmallFile(const stdfs::path& path, std::string_view what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return Status::FromErrno("cannot read " + std::string(what) + " " + path.string(), errno);
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0 && s.size() <= kMaxInputFile) {
    s.append(buf, static_cast<size_t>(n));
  }
  const int err = errno;
  ::close(fd);
  if (n < 0) return Status::FromErrno("cannot read " + path.string(), err);
  if (s.size() > kMaxInputFile) return Status::Corruption(path.string() + " is too large");
  return s;
}

// Writes a new file with mode 0600; refuses to replace an existing one.
Status WriteNewPrivateFile(const stdfs::path& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == EEXIST) {
      return Status::AlreadyExists(path.string() + " already exists; choose another file name");
    }
    return Status::FromErrno("cannot create " + path.string(), errno);
  }
  Status st;
  if (::fchmod(fd, 0600) != 0) st = Status::FromErrno("chmod " + path.string(), errno);
  size_t done = 0;
  while (st.ok() && done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      st = Status::FromErrno("write " + path.string(), errno);
    else
      done += static_cast<size_t>(n);
  }
  if (st.ok() && ::fsync(fd) != 0) st = Status::FromErrno("fsync " + path.string(), errno);
  ::close(fd);
  if (!st.ok()) ::unlink(path.c_str());
  return st;
}

std::vector<std::string> SplitPeers(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

std::string SizeText(uint32_t bytes) {
  if (bytes % (1024 * 1024) == 0) return std::to_string(bytes / (1024 * 1024)) + "M";
  if (bytes % 1024 == 0) return std::to_string(bytes / 1024) + "K";
  return std::to_string(bytes);
}

Result<std::string> WrapWithCost(const fs::MasterKey& key, const std::string& pass) {
  const KdfCost cost = KdfCostFromEnv();
  return fs::WrapMasterKey(key, pass, cost.opslimit, cost.memlimit);
}

// `--key-file F` that already exists: it must be a private, unwrapped key
// file, and the volume uses its key.
Result<fs::MasterKey> ReadExistingRawKey(const stdfs::path& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno("stat " + path.string(), errno);
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%03o", static_cast<unsigned>(st.st_mode & 0777));
    return Status::PermissionDenied("key file " + path.string() + " is mode " + mode +
                                    " (readable by others); run: chmod 600 " + path.string());
  }
  MESHFS_ASSIGN_OR_RETURN(std::string bytes, ReadSmallFile(path, "key file"));
  auto wrapped = fs::KeyFileIsWrapped(bytes);
  if (!wrapped.ok()) return wrapped.status().WithContext(path.string());
  if (*wrapped) {
    return Status::InvalidArgument(path.string() +
                                   " holds a passphrase-wrapped key; --key-file needs an "
                                   "unwrapped one (or a path that does not exist yet)");
  }
  auto key = fs::OpenKeyFile(bytes, "");
  sodium_memzero(bytes.data(), bytes.size());
  return key;
}

int RunInit(const InitOptions& o) {
  const stdfs::path dir = fs::ResolveVolumeDir(o.volume);
  std::error_code ec;
  if (stdfs::exists(dir / "config.toml", ec)) {
    return Fail("init", Status::AlreadyExists(dir.string() +
                                              " is already a volume; meshfs init never "
                                              "overwrites one (remove it first to start over)"));
  }
  if (!o.passphrase_file.empty() && !o.key_file.empty() && o.import_file.empty()) {
    return Fail("init", Status::InvalidArgument(
                            "--passphrase-file and --key-file exclude each other (a key file "
                            "holds the key unwrapped)"));
  }
  fs::VolumeConfig config;
  fs::MasterKey master;
  std::string key_bytes;  // the key file to store (wrapped or raw)
  bool have_key = false;
  std::string pass;  // passphrase already obtained, if any

  if (!o.import_file.empty()) {
    auto text = ReadSmallFile(o.import_file, "export file");
    if (!text.ok()) return Fail("init", text.status());
    auto exp = fs::VolumeExport::Parse(*text);
    if (!exp.ok()) {
      return Fail("init", Status::Corruption(o.import_file + ": " + exp.status().message()));
    }
    config = exp->config;
    if (exp->config.key_wrapped) {
      auto p = ObtainPassphrase(PassphraseUse::kUnlock, o.passphrase_file, o.import_file);
      if (!p.ok()) return Fail("init", p.status());
      pass = *p;
    }
    auto m = fs::OpenKeyFile(exp->key_file_bytes, pass);
    if (!m.ok()) return Fail("init", m.status().WithContext(o.import_file));
    master = *m;
    if (fs::VolumeKeys::Derive(master).VolumeIdHex() != config.volume_id) {
      return Fail("init", Status::Corruption(o.import_file +
                                             ": the key does not match the volume id in the file"));
    }
    if (exp->config.key_wrapped && o.key_file.empty()) {
      key_bytes = exp->key_file_bytes;  // same wrapping, same passphrase
      have_key = true;
    }
    if (o.slice_opt->count() > 0) {
      auto s = fs::ParseSliceSize(o.slice_size);
      if (!s.ok()) return Fail("init", s.status());
      if (*s != config.slice_size) {
        return Fail("init",
                    Status::InvalidArgument(
                        "--slice-size cannot change the slice size of an existing volume (" +
                        SizeText(config.slice_size) + ")"));
      }
    }
    if (o.peers_opt->count() > 0) config.peers = SplitPeers(o.peers);
    if (o.replicas_opt->count() > 0) config.replicas = o.replicas;
  } else {
    if (o.peers_opt->count() == 0) {
      return Fail("init", Status::InvalidArgument("--peers is required (unless --import)"));
    }
    config.peers = SplitPeers(o.peers);
    config.replicas = o.replicas;
    if (o.slice_opt->count() > 0) {
      auto s = fs::ParseSliceSize(o.slice_size);
      if (!s.ok()) return Fail("init", s.status());
      config.slice_size = *s;
    }
    // The id is filled in below; validate the rest before asking anything.
    config.volume_id = std::string(64, '0');
  }
  config.key_wrapped = o.key_file.empty();
  config.key_file.clear();
  if (Status st = config.Validate(); !st.ok()) return Fail("init", st);

  if (!o.key_file.empty()) {
    const stdfs::path kf = stdfs::absolute(o.key_file, ec);
    if (ec) return Fail("init", Status::IOError("bad key file path " + o.key_file));
    config.key_file = kf.lexically_normal().string();
    if (stdfs::exists(kf, ec)) {
      auto existing = ReadExistingRawKey(kf);
      if (!existing.ok()) return Fail("init", existing.status());
      if (!o.import_file.empty() && existing->bytes != master.bytes) {
        return Fail("init", Status::AlreadyExists(kf.string() + " holds another key"));
      }
      master = *existing;
    } else if (o.import_file.empty()) {
      master = fs::MasterKey::Random();
    }
    key_bytes = fs::EncodeRawKeyFile(master);
  } else if (!have_key) {
    if (o.import_file.empty()) master = fs::MasterKey::Random();
    auto p = ObtainPassphrase(PassphraseUse::kCreate, o.passphrase_file, dir.string());
    if (!p.ok()) return Fail("init", p.status());
    auto wrapped = WrapWithCost(master, *p);
    sodium_memzero(p->data(), p->size());
    if (!wrapped.ok()) return Fail("init", wrapped.status());
    key_bytes = *wrapped;
  }
  sodium_memzero(pass.data(), pass.size());
  const fs::VolumeKeys keys = fs::VolumeKeys::Derive(master);
  config.volume_id = keys.VolumeIdHex();
  auto v = fs::Volume::Create(dir, config, key_bytes);
  sodium_memzero(key_bytes.data(), key_bytes.size());
  if (!v.ok()) return Fail("init", v.status());

  std::cout << (o.import_file.empty() ? "Created" : "Imported") << " volume " << dir.string()
            << "\n  volume id   " << config.volume_id << "\n  peers       ";
  for (size_t i = 0; i < config.peers.size(); ++i) std::cout << (i ? "," : "") << config.peers[i];
  std::cout << "\n  replicas    " << config.replicas << "\n  slice size  "
            << SizeText(config.slice_size) << "\n  key         "
            << (config.key_wrapped ? "wrapped under your passphrase in " + v->key_path().string()
                                   : "unwrapped in " + v->key_path().string())
            << "\nKeep a copy of the key: meshfs key export " << o.volume << " FILE\n";
  return kExitOk;
}

int RunExport(const std::string& volume, const std::string& file,
              const std::string& passphrase_file) {
  auto v = fs::Volume::Open(fs::ResolveVolumeDir(volume));
  if (!v.ok()) return Fail("key export", v.status());
  // Unlock first: a wrong passphrase fails here, not on the other machine.
  auto keys = UnlockVolume(*v, passphrase_file);
  if (!keys.ok()) return Fail("key export", keys.status());
  auto bytes = v->ReadKeyFile();
  if (!bytes.ok()) return Fail("key export", bytes.status());
  fs::VolumeExport exp;
  exp.config = v->config();
  exp.key_file_bytes = *bytes;
  const std::string text = exp.ToToml();
  Status st = WriteNewPrivateFile(file, text);
  if (!st.ok()) return Fail("key export", st);
  std::cout << "Exported volume " << v->config().volume_id.substr(0, 16) << "\u2026 to " << file
            << " ("
            << (exp.config.key_wrapped ? "key wrapped under the volume's passphrase"
                                       : "key NOT wrapped: keep this file secret")
            << ")\nRecreate it elsewhere with: meshfs init VOLUME --import " << file << "\n";
  return kExitOk;
}

int RunPasswd(const std::string& volume, const std::string& passphrase_file,
              const std::string& new_passphrase_file) {
  auto v = fs::Volume::Open(fs::ResolveVolumeDir(volume));
  if (!v.ok()) return Fail("key passwd", v.status());
  if (!v->config().key_wrapped) {
    return Fail("key passwd", Status::NotSupported(volume + " keeps its key unwrapped in " +
                                                   v->key_path().string() +
                                                   " (--key-file); it has no passphrase"));
  }
  auto bytes = v->ReadKeyFile();
  if (!bytes.ok()) return Fail("key passwd", bytes.status());
  auto old_pass = ObtainPassphrase(PassphraseUse::kUnlock, passphrase_file, v->dir().string());
  if (!old_pass.ok()) return Fail("key passwd", old_pass.status());
  auto master = fs::OpenKeyFile(*bytes, *old_pass);
  sodium_memzero(old_pass->data(), old_pass->size());
  if (!master.ok()) return Fail("key passwd", master.status().WithContext(v->key_path().string()));
  if (fs::VolumeKeys::Derive(*master).VolumeIdHex() != v->config().volume_id) {
    return Fail("key passwd", Status::Corruption("the key in " + v->key_path().string() +
                                                 " belongs to another volume"));
  }
  auto new_pass = ObtainPassphrase(PassphraseUse::kChange, new_passphrase_file, v->dir().string());
  if (!new_pass.ok()) return Fail("key passwd", new_pass.status());
  auto wrapped = WrapWithCost(*master, *new_pass);
  sodium_memzero(new_pass->data(), new_pass->size());
  if (!wrapped.ok()) return Fail("key passwd", wrapped.status());
  Status st = v->ReplaceKeyFile(*wrapped);
  if (!st.ok()) return Fail("key passwd", st);
  std::cout << "Passphrase of " << v->dir().string() << " changed.\n";
  return kExitOk;
}

}  // namespace

void RegisterInitCommands(CLI::App& app, CommandTable& table) {
  static InitOptions o;
  auto* init = app.add_subcommand("init", "Create a new volume (keys and config)");
  init->add_option("VOLUME", o.volume, "Volume directory, or a name under ~/.config/meshfs")
      ->required();
  o.peers_opt = init->add_option("--peers", o.peers, "Storage peers, HOST:PORT[,...]");
  o.replicas_opt = init->add_option("--replicas", o.replicas, "Copies of each slice (default 3)");
  o.slice_opt = init->add_option("--slice-size", o.slice_size, "Slice size, 64K..16M (default 1M)");
  init->add_option("--passphrase-file", o.passphrase_file,
                   "Read the passphrase from a file (else MESHFS_PASSPHRASE or a prompt);\nwith "
                   "--import, the passphrase of the export");
  init->add_option("--key-file", o.key_file,
                   "Keep the key unwrapped in this file (mode 0600), for unattended use");
  init->add_option("--import", o.import_file,
                   "Recreate an existing volume from a file made by 'meshfs key export'");
  init->footer(
      "Environment: MESHFS_PASSPHRASE (the passphrase), MESHFS_KDF_COST=min (fast, weak\n"
      "key derivation; for tests only).");
  table.Add(init, [] { return RunInit(o); });

  auto* key = app.add_subcommand("key", "Export a volume key or change its passphrase");
  key->require_subcommand(1);
  static std::string exp_volume, exp_file, exp_pf;
  auto* exp = key->add_subcommand("export", "Write the volume key and config to FILE (mode 0600)");
  exp->add_option("VOLUME", exp_volume)->required();
  exp->add_option("FILE", exp_file, "A new file (never overwritten)")->required();
  exp->add_option("--passphrase-file", exp_pf, "Read the passphrase from a file");
  table.Add(exp, [] { return RunExport(exp_volume, exp_file, exp_pf); });

  static std::string pw_volume, pw_pf, pw_new_pf;
  auto* passwd = key->add_subcommand("passwd", "Change the passphrase of a volume");
  passwd->add_option("VOLUME", pw_volume)->required();
  passwd->add_option("--passphrase-file", pw_pf, "Read the current passphrase from a file");
  passwd->add_option("--new-passphrase-file", pw_new_pf, "Read the new passphrase from a file");
  passwd->footer(
      "Environment: MESHFS_PASSPHRASE (current), MESHFS_NEW_PASSPHRASE (new). On a\n"
      "terminal both are asked for, the new one twice.");
  table.Add(passwd, [] { return RunPasswd(pw_volume, pw_pf, pw_new_pf); });
}

}  // namespace meshfs::cli
