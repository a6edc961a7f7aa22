// DiskStore (see disk_store.h).
#include "meshfs/net/disk_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sodium.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "meshfs/core/hex.h"
#include "meshfs/core/log.h"

namespace meshfs::net {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";
// Blobs being written: slices/XY/.tmp.<addr>.<pid>.<n>, removed at start.
constexpr std::string_view kTempPrefix = ".tmp.";

Status ErrnoStatus(std::string_view what, int err) {
  if (err == ENOSPC || err == EDQUOT) {
    return Status::NoSpace(std::string(what) + ": " + std::strerror(err));
  }
  return Status::FromErrno(what, err);
}

Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus("cannot create directory " + path, errno);
  }
  return Status::OK();
}

Status FsyncDir(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open directory " + path, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus("fsync " + path, err);
  return Status::OK();
}

// Writes `data` to a new file at `path` and fsyncs it. Removes it on failure.
// `drop_cache`: then drops the file's pages (clean after the fsync) from the
// page cache, see DiskStore::Put.
Status WriteNewFile(const std::string& path, std::string_view data, bool drop_cache = false) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("cannot create " + path, errno);
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      ::unlink(path.c_str());
      return ErrnoStatus("write " + path, err);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return ErrnoStatus("fsync " + path, err);
  }
  if (drop_cache) (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // a hint only
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    return ErrnoStatus("close " + path, err);
  }
  return Status::OK();
}

bool ValidOwner(std::string_view owner) {
  if (owner.size() != 64) return false;
  for (char c : owner) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// A prepared statement that finalizes itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return stmt_; }
  void Bind(int i, std::string_view s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void BindBlob(int i, std::string_view s) {
    sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  int Step() { return sqlite3_step(stmt_); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_ERROR;
};

Status DbError(sqlite3* db, std::string_view what) {
  return Status::IOError("slice index: " + std::string(what) + ": " + sqlite3_errmsg(db));
}

}  // namespace

DiskStore::DiskStore(Options options) : options_(std::move(options)) {}

DiskStore::~DiskStore() {
  if (db_ != nullptr) sqlite3_close(db_);
}

Result<std::unique_ptr<DiskStore>> DiskStore::Open(Options options) {
  if (options.dir.empty()) return Status::InvalidArgument("data directory is empty");
  std::unique_ptr<DiskStore> store(new DiskStore(std::move(options)));
  MESHFS_RETURN_IF_ERROR(store->Init());
  return store;
}

std::string DiskStore::BlobPath(const SliceId& id) const {
  const std::string hex = id.ToHex();
  return options_.dir + "/slices/" + hex.substr(0, 2) + "/" + hex;
}

Status DiskStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err != nullptr ? err : "unknown error";
    sqlite3_free(err);
    return Status::IOError("slice index: " + msg);
  }
  return Status::OK();
}

Status DiskStore::Init() {
  const std::string& dir = options_.dir;
  MESHFS_RETURN_IF_ERROR(MakeDir(dir));
  MESHFS_RETURN_IF_ERROR(MakeDir(dir + "/slices"));
  MESHFS_RETURN_IF_ERROR(MakeDir(dir + "/tmp"));

  // Leftovers of interrupted writes.
  int removed = 0;
  if (DIR* d = ::opendir((dir + "/tmp").c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      if (::unlink((dir + "/tmp/" + e->d_name).c_str()) == 0) ++removed;
    }
    ::closedir(d);
  }
  // Node id.
  const std::string id_path = dir + "/node_id";
  if (FILE* f = std::fopen(id_path.c_str(), "r")) {
    char buf[65] = {0};
    const size_t n = std::fread(buf, 1, 64, f);
    std::fclose(f);
    node_id_.assign(buf, n);
    while (!node_id_.empty() && (node_id_.back() == '\n' || node_id_.back() == ' '))
      node_id_.pop_back();
  }
  if (node_id_.size() != 32 || !HexDecode(node_id_).ok()) {
    unsigned char raw[16];
    randombytes_buf(raw, sizeof(raw));
    node_id_ = HexEncode(std::string_view(reinterpret_cast<const char*>(raw), sizeof(raw)));
    const std::string tmp = dir + "/tmp/node_id";
    ::unlink(tmp.c_str());
    MESHFS_RETURN_IF_ERROR(WriteNewFile(tmp, node_id_ + "\n"));
    if (::rename(tmp.c_str(), id_path.c_str()) != 0) {
      return ErrnoStatus("cannot write " + id_path, errno);
    }
    MESHFS_RETURN_IF_ERROR(FsyncDir(dir));
  }

  // Counters from the files themselves.
  for (int i = 0; i < 256; ++i) {
    const char name[3] = {kHexDigits[i >> 4], kHexDigits[i & 15], 0};
    const std::string sub = dir + "/slices/" + name;
    DIR* d = ::opendir(sub.c_str());
    if (d == nullptr) {
      if (errno == ENOENT) continue;  // fan-out directories are made on first use
      return ErrnoStatus("cannot read " + sub, errno);
    }
    fanout_made_[static_cast<size_t>(i)] = true;
    while (dirent* e = ::readdir(d)) {
      const std::string_view fname = e->d_name;
      if (fname == "." || fname == "..") continue;
      if (fname.substr(0, kTempPrefix.size()) == kTempPrefix) {
        if (::unlink((sub + "/" + std::string(fname)).c_str()) == 0) ++removed;
        continue;
      }
      auto id = SliceId::FromHex(fname);
      if (!id.ok() || fname.substr(0, 2) != name) {
        LogWarn("store", "ignoring stray file " + sub + "/" + std::string(fname));
        continue;
      }
      struct stat st;
      if (::stat((sub + "/" + std::string(fname)).c_str(), &st) != 0) continue;
      sizes_[*id] = static_cast<uint64_t>(st.st_size);
      used_ += static_cast<uint64_t>(st.st_size);
    }
    ::closedir(d);
  }

  if (removed > 0) {
    LogInfo("store", "removed " + std::to_string(removed) + " unfinished upload(s) from " + dir);
  }

  if (options_.capacity_bytes == 0) {
    struct statvfs vfs;
    if (::statvfs(dir.c_str(), &vfs) != 0) return ErrnoStatus("statvfs " + dir, errno);
    options_.capacity_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize + used_;
  }

  const std::string db_path = dir + "/index.db";
  if (sqlite3_open_v2(db_path.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    return Status::IOError("cannot open " + db_path + ": " +
                           (db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory"));
  }
  sqlite3_busy_timeout(db_, 5000);
  MESHFS_RETURN_IF_ERROR(
      Exec("PRAGMA journal_mode=WAL;"
           "PRAGMA synchronous=NORMAL;"
           "CREATE TABLE IF NOT EXISTS refs(addr BLOB NOT NULL, owner TEXT NOT NULL,"
           "  PRIMARY KEY(addr, owner)) WITHOUT ROWID;"
           "CREATE TABLE IF NOT EXISTS nonces(owner TEXT NOT NULL, nonce TEXT NOT NULL,"
           "  ts INTEGER NOT NULL, PRIMARY KEY(owner, nonce)) WITHOUT ROWID;"
           "CREATE INDEX IF NOT EXISTS nonces_ts ON nonces(ts);"
           "CREATE TABLE IF NOT EXISTS roots(volume TEXT NOT NULL, seq INTEGER NOT NULL,"
           "  record BLOB NOT NULL, PRIMARY KEY(volume, seq)) WITHOUT ROWID;"));
  LogInfo("store", "opened " + dir + ": " + std::to_string(sizes_.size()) + " slices, " +
                       std::to_string(used_) + " bytes used of " +
                       std::to_string(options_.capacity_bytes));
  return Status::OK();
}

Status DiskStore::AddRef(const SliceId& id, std::string_view owner) {
  if (owner.empty()) return Status::OK();
  Stmt s(db_, "INSERT OR IGNORE INTO refs(addr, owner) VALUES(?, ?)");
  if (!s.ok()) return DbError(db_, "prepare");
  s.BindBlob(1, id.Raw());
  s.Bind(2, owner);
  if (s.Step() != SQLITE_DONE) return DbError(db_, "add reference");
  return Status::OK();
}

Result<bool> DiskStore::Put(const SliceId& id, std::string_view blob, std::string_view owner,
                            bool address_verified) {
  if (blob.size() > options_.max_blob_bytes) {
    return Status::TooLarge("blob of " + std::to_string(blob.size()) + " bytes is over the " +
                            std::to_string(options_.max_blob_bytes) + "-byte limit");
  }
  if (!owner.empty() && !ValidOwner(owner)) {
    return Status::InvalidArgument("owner must be a volume id (64 lowercase hex)");
  }
  if (!address_verified && !id.Matches(blob)) {
    return Status::Corruption("body does not match the address (BLAKE2b-256 differs)");
  }
  const uint64_t size = blob.size();
  uint64_t serial;
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return writing_.count(id) == 0; });
    if (sizes_.count(id) != 0) {
      MESHFS_RETURN_IF_ERROR(AddRef(id, owner));
      return false;
    }
    if (used_ + reserved_ + size > options_.capacity_bytes) {
      return Status::NoSpace("store full: " + std::to_string(used_) + " of " +
                             std::to_string(options_.capacity_bytes) + " bytes used, " +
                             std::to_string(size) + " more do not fit");
    }
    reserved_ += size;
    writing_.insert(id);
    serial = ++tmp_counter_;
  }
  const std::string hex = id.ToHex();
  const std::string fan_dir = options_.dir + "/slices/" + hex.substr(0, 2);
  const size_t fan = static_cast<size_t>(id.bytes()[0]);
  Status st;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!fanout_made_[fan]) {
      st = MakeDir(fan_dir);
      if (st.ok()) st = FsyncDir(options_.dir + "/slices");
      if (st.ok()) fanout_made_[fan] = true;
    }
  }
  // The blob is written beside its final name (a dot file, renamed in the
  // same directory), not in one shared tmp/ directory: renaming from there
  // into the fan-out directories serialised concurrent uploads on the
  // directory locks (3.9 % of a peer's CPU spinning on them while storing
  // small blobs, 0.02 % now, in `perf`).
  const std::string tmp = fan_dir + "/" + std::string(kTempPrefix) + hex + "." +
                          std::to_string(::getpid()) + "." + std::to_string(serial);
  const std::string final_path = BlobPath(id);
  // The blob's pages leave the page cache once they are on disk: a peer
  // rarely serves a slice it just stored (the writer has it in its cache),
  // and the next PUT reuses the freed memory. Keeping every new blob cached
  // made the page cache grow into memory not touched for a while, which
  // costs a fresh page per 4 KiB written (on the 2-core VM of
  // docs/benchmarks.md: 2.0 ms of system CPU per MiB written instead of 0.5).
  if (st.ok()) st = WriteNewFile(tmp, blob, /*drop_cache=*/true);
  {
    std::lock_guard<std::mutex> lock(mu_);
    reserved_ -= size;
    writing_.erase(id);
    cv_.notify_all();
    if (st.ok() && ::rename(tmp.c_str(), final_path.c_str()) != 0) {
      st = ErrnoStatus("cannot rename into " + final_path, errno);
      ::unlink(tmp.c_str());
    }
    if (!st.ok()) return st;
    sizes_[id] = size;
    used_ += size;
    Status ref = AddRef(id, owner);
    if (!ref.ok()) LogWarn("store", ref.ToString());
  }
  MESHFS_RETURN_IF_ERROR(FsyncDir(fan_dir));
  return true;
}

Result<DiskStore::BlobFile> DiskStore::OpenBlob(const SliceId& id) {
  const std::string path = BlobPath(id);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("slice " + id.ToHex() + " not stored here");
    return ErrnoStatus("open " + path, errno);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus("stat " + path, err);
  }
  return BlobFile{fd, static_cast<uint64_t>(st.st_size)};
}

Result<std::string> DiskStore::Get(const SliceId& id) {
  MESHFS_ASSIGN_OR_RETURN(BlobFile f, OpenBlob(id));
  std::string out(f.size, '\0');
  size_t off = 0;
  while (off < out.size()) {
    const ssize_t n = ::pread(f.fd, out.data() + off, out.size() - off, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(f.fd);
      return ErrnoStatus("read slice " + id.ToHex(), err);
    }
    off += static_cast<size_t>(n);
  }
  ::close(f.fd);
  return out;
}

bool DiskStore::Contains(const SliceId& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return sizes_.count(id) != 0;
}

Result<bool> DiskStore::RemoveRef(const SliceId& id, std::string_view owner) {
  std::lock_guard<std::mutex> lock(mu_);
  {
    Stmt s(db_, "DELETE FROM refs WHERE addr = ? AND owner = ?");
    if (!s.ok()) return DbError(db_, "prepare");
    s.BindBlob(1, id.Raw());
    s.Bind(2, owner);
    if (s.Step() != SQLITE_DONE) return DbError(db_, "drop reference");
    if (sqlite3_changes(db_) == 0) {
      return Status::NotFound("volume " + std::string(owner) + " holds no reference to slice " +
                              id.ToHex());
    }
  }
  Stmt c(db_, "SELECT COUNT(*) FROM refs WHERE addr = ?");
  if (!c.ok()) return DbError(db_, "prepare");
  c.BindBlob(1, id.Raw());
  if (c.Step() != SQLITE_ROW) return DbError(db_, "count references");
  if (sqlite3_column_int64(c.get(), 0) > 0) return false;
  auto it = sizes_.find(id);
  if (it == sizes_.end()) return false;
  const std::string path = BlobPath(id);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus("cannot remove " + path, errno);
  }
  used_ -= it->second;
  sizes_.erase(it);
  return true;
}

Status DiskStore::UseNonce(std::string_view owner, std::string_view nonce, int64_t timestamp,
                           int64_t now_seconds, int64_t keep_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  {
    Stmt prune(db_, "DELETE FROM nonces WHERE ts < ?");
    if (!prune.ok()) return DbError(db_, "prepare");
    prune.Bind(1, now_seconds - keep_seconds);
    if (prune.Step() != SQLITE_DONE) return DbError(db_, "prune nonces");
  }
  Stmt s(db_, "INSERT OR IGNORE INTO nonces(owner, nonce, ts) VALUES(?, ?, ?)");
  if (!s.ok()) return DbError(db_, "prepare");
  s.Bind(1, owner);
  s.Bind(2, nonce);
  s.Bind(3, timestamp);
  if (s.Step() != SQLITE_DONE) return DbError(db_, "record nonce");
  if (sqlite3_changes(db_) == 0) {
    return Status::PermissionDenied("replayed request: nonce already used by volume " +
                                    std::string(owner));
  }
  return Status::OK();
}

Status DiskStore::PutRoot(std::string_view volume_hex, uint64_t sequence,
                          std::string_view encoded) {
  if (sequence > static_cast<uint64_t>(INT64_MAX)) {
    return Status::InvalidArgument("root record sequence too large");
  }
  std::lock_guard<std::mutex> lock(mu_);
  MESHFS_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  auto fail = [&](Status st) {
    (void)Exec("ROLLBACK");
    return st;
  };
  {
    Stmt s(db_, "SELECT MAX(seq) FROM roots WHERE volume = ?");
    if (!s.ok()) return fail(DbError(db_, "prepare"));
    s.Bind(1, volume_hex);
    if (s.Step() == SQLITE_ROW && sqlite3_column_type(s.get(), 0) != SQLITE_NULL) {
      const int64_t newest = sqlite3_column_int64(s.get(), 0);
      if (static_cast<int64_t>(sequence) <= newest) {
        return fail(Status::AlreadyExists("sequence " + std::to_string(sequence) +
                                          " is not higher than the newest kept (" +
                                          std::to_string(newest) + ")"));
      }
    }
  }
  {
    Stmt s(db_, "INSERT INTO roots(volume, seq, record) VALUES(?, ?, ?)");
    if (!s.ok()) return fail(DbError(db_, "prepare"));
    s.Bind(1, volume_hex);
    s.Bind(2, static_cast<int64_t>(sequence));
    s.BindBlob(3, encoded);
    if (s.Step() != SQLITE_DONE) return fail(DbError(db_, "store root record"));
  }
  {
    Stmt s(db_,
           "DELETE FROM roots WHERE volume = ?1 AND seq NOT IN "
           "(SELECT seq FROM roots WHERE volume = ?1 ORDER BY seq DESC LIMIT ?2)");
    if (!s.ok()) return fail(DbError(db_, "prepare"));
    s.Bind(1, volume_hex);
    s.Bind(2, static_cast<int64_t>(kRootsKept));
    if (s.Step() != SQLITE_DONE) return fail(DbError(db_, "trim root records"));
  }
  return Exec("COMMIT");
}

Result<std::vector<std::string>> DiskStore::Roots(std::string_view volume_hex) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(db_, "SELECT record FROM roots WHERE volume = ? ORDER BY seq DESC");
  if (!s.ok()) return DbError(db_, "prepare");
  s.Bind(1, volume_hex);
  std::vector<std::string> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    const auto* data = static_cast<const char*>(sqlite3_column_blob(s.get(), 0));
    const int n = sqlite3_column_bytes(s.get(), 0);
    out.emplace_back(data == nullptr ? "" : std::string(data, static_cast<size_t>(n)));
  }
  if (rc != SQLITE_DONE) return DbError(db_, "read root records");
  return out;
}

DiskStore::Stats DiskStore::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return Stats{sizes_.size(), used_, options_.capacity_bytes};
}

}  // namespace meshfs::net
