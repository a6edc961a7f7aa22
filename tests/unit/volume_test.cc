// Volume directories: config.toml parsing and writing, slice sizes, name
// resolution, creation (modes, no overwrite) and unlocking.
#include "meshfs/fs/volume.h"

#include <gtest/gtest.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include "testing/temp_dir.h"

namespace meshfs::fs {
namespace {

namespace stdfs = std::filesystem;
using meshfs::testing::TempDir;

mode_t ModeOf(const stdfs::path& p) {
  struct stat st;
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 0777;
}

VolumeConfig SampleConfig(const VolumeKeys& keys) {
  VolumeConfig c;
  c.volume_id = keys.VolumeIdHex();
  c.peers = {"127.0.0.1:7001", "node-2.example:7002", "[::1]:7003"};
  c.replicas = 2;
  c.slice_size = 256 * 1024;
  return c;
}

TEST(SliceSize, Parses) {
  EXPECT_EQ(*ParseSliceSize("1M"), 1048576u);
  EXPECT_EQ(*ParseSliceSize("64K"), 65536u);
  EXPECT_EQ(*ParseSliceSize("64k"), 65536u);
  EXPECT_EQ(*ParseSliceSize("16M"), 16777216u);
  EXPECT_EQ(*ParseSliceSize("2MiB"), 2097152u);
  EXPECT_EQ(*ParseSliceSize("131072"), 131072u);
  for (const char* bad :
       {"", "M", "63K", "17M", "1G", "1.5M", "-1M", "1 M", "1X", "99999999999999999999999M"}) {
    auto r = ParseSliceSize(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_NE(ParseSliceSize("17M").status().message().find("64K..16M"), std::string::npos);
}

TEST(VolumeConfig, RoundTrips) {
  const VolumeKeys keys = VolumeKeys::Derive(MasterKey::Random());
  VolumeConfig c = SampleConfig(keys);
  auto parsed = VolumeConfig::Parse(c.ToToml());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString() << "\n" << c.ToToml();
  EXPECT_EQ(parsed->volume_id, c.volume_id);
  EXPECT_EQ(parsed->peers, c.peers);
  EXPECT_EQ(parsed->replicas, 2);
  EXPECT_EQ(parsed->slice_size, 256u * 1024);
  EXPECT_TRUE(parsed->key_wrapped);
  EXPECT_TRUE(parsed->key_file.empty());

  c.key_wrapped = false;
  c.key_file = "/etc/meshfs/a \"quoted\\\" key";
  parsed = VolumeConfig::Parse(c.ToToml());
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_FALSE(parsed->key_wrapped);
  EXPECT_EQ(parsed->key_file, c.key_file);
}

TEST(VolumeConfig, RejectsBadFieldsNamingThem) {
  const std::string id(64, 'a');
  const std::string good = "format_version = 1\nvolume_id = \"" + id +
                           "\"\npeers = [\"h:1\"]\nreplicas = 3\nslice_size = 1048576\n"
                           "key_kind = \"wrapped\"\n";
  ASSERT_TRUE(VolumeConfig::Parse(good).ok());
  struct Case {
    std::string text, want;
  } cases[] = {
      {"format_version = 2\n", "format version 2"},
      {"volume_id = \"x\"\nformat_version = 1\n", "volume_id"},
      {"format_version = 1\nvolume_id = \"" + id + "\"\n", "peers is missing"},
      {"format_version = 1\nvolume_id = \"" + id + "\"\npeers = []\n", "peers is empty"},
      {"format_version = 1\nvolume_id = \"" + id + "\"\npeers = [\"nohost\"]\n", "HOST:PORT"},
      {"format_version = 1\nvolume_id = \"" + id + "\"\npeers = [\"h:99999\"]\n", "HOST:PORT"},
      {"format_version = 1\nvolume_id = \"" + id + "\"\npeers = [\"h:1\"]\nreplicas = 0\n",
       "replicas"},
      {"format_version = 1\nvolume_id = \"" + id +
           "\"\npeers = [\"h:1\"]\nreplicas = 3\nslice_size = 100\n",
       "slice_size"},
      {"format_version = 1\nvolume_id = \"" + id +
           "\"\npeers = [\"h:1\"]\nreplicas = 3\nslice_size = 65536\nkey_kind = \"magic\"\n",
       "key_kind"},
      {"format_version = 1\nvolume_id = \"" + id +
           "\"\npeers = [\"h:1\"]\nreplicas = 3\nslice_size = 65536\nkey_kind = \"raw\"\n"
           "key_file = \"relative\"\n",
       "absolute"},
      {"this is = = not toml", "not valid TOML at line 1"},
      {"", "format_version is missing"},
  };
  for (const auto& c : cases) {
    auto r = VolumeConfig::Parse(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.want), std::string::npos)
        << r.status().message() << " (wanted " << c.want << ")";
  }
}

TEST(ResolveVolumeDir, NamesAndPaths) {
  const char* old_xdg = std::getenv("XDG_CONFIG_HOME");
  const std::string saved = old_xdg ? old_xdg : "";
  ::setenv("XDG_CONFIG_HOME", "/xdg", 1);
  EXPECT_EQ(ResolveVolumeDir("photos"), stdfs::path("/xdg/meshfs/photos"));
  EXPECT_EQ(ResolveVolumeDir("./photos"), stdfs::path("./photos"));
  EXPECT_EQ(ResolveVolumeDir("/abs/photos"), stdfs::path("/abs/photos"));
  EXPECT_EQ(ResolveVolumeDir("a/b"), stdfs::path("a/b"));
  ::unsetenv("XDG_CONFIG_HOME");
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] != '\0') {
    EXPECT_EQ(ResolveVolumeDir("photos"), stdfs::path(home) / ".config/meshfs/photos");
  }
  if (old_xdg) ::setenv("XDG_CONFIG_HOME", saved.c_str(), 1);
}

TEST(Volume, CreateOpenUnlock) {
  TempDir tmp;
  const MasterKey master = MasterKey::Random();
  const VolumeKeys keys = VolumeKeys::Derive(master);
  auto file = WrapMasterKey(master, "pw", crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN);
  ASSERT_TRUE(file.ok());
  const stdfs::path dir = tmp.path() / "sub" / "vol";
  auto v = Volume::Create(dir, SampleConfig(keys), *file);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(ModeOf(dir), 0700u);
  EXPECT_EQ(ModeOf(dir / "key"), 0600u);
  EXPECT_EQ(ModeOf(dir / "config.toml"), 0600u);

  auto opened = Volume::Open(dir);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->config().volume_id, keys.VolumeIdHex());
  EXPECT_EQ(opened->config().peers.size(), 3u);
  auto unlocked = opened->Unlock("pw");
  ASSERT_TRUE(unlocked.ok()) << unlocked.status().ToString();
  EXPECT_EQ(unlocked->slice.content_key, keys.slice.content_key);
  auto wrong = opened->Unlock("nope");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), Code::kPermissionDenied);
  EXPECT_NE(wrong.status().message().find("wrong passphrase"), std::string::npos);

  // Never overwritten.
  auto again = Volume::Create(dir, SampleConfig(keys), *file);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kAlreadyExists);

  // Passphrase change replaces the key file atomically, keeping its mode.
  auto rewrapped =
      WrapMasterKey(master, "new", crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN);
  ASSERT_TRUE(rewrapped.ok());
  ASSERT_TRUE(opened->ReplaceKeyFile(*rewrapped).ok());
  EXPECT_EQ(ModeOf(dir / "key"), 0600u);
  EXPECT_FALSE(opened->Unlock("pw").ok());
  EXPECT_TRUE(opened->Unlock("new").ok());
}

TEST(Volume, OpenErrors) {
  TempDir tmp;
  auto r = Volume::Open(tmp.path() / "missing");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("meshfs init"), std::string::npos);
  std::ofstream(tmp.path() / "config.toml") << "format_version = 1\n";
  auto bad = Volume::Open(tmp.path());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kCorruption);
  EXPECT_NE(bad.status().message().find("volume_id is missing"), std::string::npos)
      << bad.status().message();
}

TEST(Volume, CreateRefusesNonEmptyDirectory) {
  TempDir tmp;
  std::ofstream(tmp.path() / "precious.txt") << "keep me";
  const MasterKey master = MasterKey::Random();
  auto v = Volume::Create(tmp.path(), SampleConfig(VolumeKeys::Derive(master)),
                          EncodeRawKeyFile(master));
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), Code::kAlreadyExists);
  std::ifstream in(tmp.path() / "precious.txt");
  std::string s;
  std::getline(in, s);
  EXPECT_EQ(s, "keep me");
}

TEST(Volume, ExternalRawKeyFile) {
  TempDir tmp;
  const MasterKey master = MasterKey::Random();
  const VolumeKeys keys = VolumeKeys::Derive(master);
  VolumeConfig c = SampleConfig(keys);
  c.key_wrapped = false;
  c.key_file = (tmp.path() / "secret.key").string();
  auto v = Volume::Create(tmp.path() / "vol", c, EncodeRawKeyFile(master));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_FALSE(stdfs::exists(tmp.path() / "vol" / "key"));
  EXPECT_EQ(ModeOf(c.key_file), 0600u);
  auto opened = Volume::Open(tmp.path() / "vol");
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->key_path(), stdfs::path(c.key_file));
  auto unlocked = opened->Unlock("");
  ASSERT_TRUE(unlocked.ok()) << unlocked.status().ToString();
  EXPECT_EQ(unlocked->volume_id, keys.volume_id);

  // A raw key readable by others is refused with the fix in the message.
  ASSERT_EQ(::chmod(c.key_file.c_str(), 0644), 0);
  auto loose = opened->Unlock("");
  ASSERT_FALSE(loose.ok());
  EXPECT_EQ(loose.status().code(), Code::kPermissionDenied);
  EXPECT_NE(loose.status().message().find("chmod 600"), std::string::npos)
      << loose.status().message();
  ASSERT_EQ(::chmod(c.key_file.c_str(), 0600), 0);

  // Another volume's key is refused.
  const MasterKey other = MasterKey::Random();
  ASSERT_TRUE(opened->ReplaceKeyFile(EncodeRawKeyFile(other)).ok());
  auto foreign = opened->Unlock("");
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.status().code(), Code::kCorruption);
  EXPECT_NE(foreign.status().message().find("belongs to another volume"), std::string::npos);
}

TEST(Volume, DamagedKeyFileSaysDamaged) {
  TempDir tmp;
  const MasterKey master = MasterKey::Random();
  auto file = WrapMasterKey(master, "pw", crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN);
  ASSERT_TRUE(file.ok());
  auto v = Volume::Create(tmp.path() / "vol", SampleConfig(VolumeKeys::Derive(master)), *file);
  ASSERT_TRUE(v.ok());
  std::string bad = *file;
  bad[60] ^= 1;
  ASSERT_TRUE(v->ReplaceKeyFile(bad).ok());
  auto r = v->Unlock("pw");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find("key file is damaged"), std::string::npos);
  ASSERT_EQ(::unlink(v->key_path().c_str()), 0);
  auto gone = v->Unlock("pw");
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), Code::kNotFound);
}

std::string config_only() { return SampleConfig(VolumeKeys::Derive(MasterKey::Random())).ToToml(); }

TEST(VolumeExport, RoundTripsAndRejectsDamage) {
  const MasterKey master = MasterKey::Random();
  const VolumeKeys keys = VolumeKeys::Derive(master);
  VolumeExport e;
  e.config = SampleConfig(keys);
  auto file = WrapMasterKey(master, "pw", crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN);
  ASSERT_TRUE(file.ok());
  e.key_file_bytes = *file;
  const std::string text = e.ToToml();
  auto parsed = VolumeExport::Parse(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString() << "\n" << text;
  EXPECT_EQ(parsed->config.volume_id, keys.VolumeIdHex());
  EXPECT_EQ(parsed->config.peers, e.config.peers);
  EXPECT_EQ(parsed->config.slice_size, e.config.slice_size);
  EXPECT_EQ(parsed->key_file_bytes, *file);
  auto opened = OpenKeyFile(parsed->key_file_bytes, "pw");
  ASSERT_TRUE(opened.ok());
  EXPECT_EQ(opened->bytes, master.bytes);

  // Raw keys: key_kind must say so.
  VolumeExport raw = e;
  raw.config.key_wrapped = false;
  raw.config.key_file = "/somewhere/k";  // never exported
  raw.key_file_bytes = EncodeRawKeyFile(master);
  const std::string raw_text = raw.ToToml();
  EXPECT_EQ(raw_text.find("key_file"), std::string::npos);
  EXPECT_NE(raw_text.find("NOT wrapped"), std::string::npos);
  ASSERT_TRUE(VolumeExport::Parse(raw_text).ok());

  auto replace = [&](const std::string& from, const std::string& to) {
    std::string t = text;
    const size_t at = t.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return t.replace(at, from.size(), to);
  };
  struct Case {
    std::string text, want;
  } cases[] = {
      {replace("meshfs-volume-export", "something-else"), "not a meshfs volume export"},
      {replace("format_version = 1", "format_version = 9"), "unknown format version 9"},
      {replace("key = \"4d46534b", "key = \"4d46534c"), "key file is damaged"},
      {replace("key = \"4d", "key = \"zz"), "not lowercase hex"},
      {replace("key_kind = \"wrapped\"", "key_kind = \"raw\""), "does not match"},
      {replace("replicas = 2", "replicas = 99"), "replicas"},
      {config_only(), "not a meshfs volume export"},
      {"", "not a meshfs volume export"},
  };
  for (const auto& c : cases) {
    auto r = VolumeExport::Parse(c.text);
    ASSERT_FALSE(r.ok()) << c.want;
    EXPECT_NE(r.status().message().find(c.want), std::string::npos)
        << r.status().message() << " (wanted " << c.want << ")";
  }
}

}  // namespace
}  // namespace meshfs::fs
