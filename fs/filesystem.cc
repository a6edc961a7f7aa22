#include "meshfs/fs/filesystem.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>

#include "meshfs/core/buffer_pool.h"
#include "meshfs/core/log.h"
#include "meshfs/core/thread_name.h"
#include "meshfs/fs/errno.h"
#include "meshfs/fs/posix_acl.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

namespace meshfs::fs {
namespace {

constexpr char kLog[] = "fs";
constexpr int64_t kHourNs = 3600LL * 1'000'000'000;
constexpr int64_t kDayNs = 24 * kHourNs;

// Whether a handle opened with `flags` may change the file's contents.
bool IsWriting(int flags) { return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC); }
constexpr uint64_t kMaxFileSize = (1ull << 62);

bool ValidName(std::string_view name) {
  return !name.empty() && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

int CheckName(std::string_view name) {
  if (name.size() > kNameMax) return ENAMETOOLONG;
  if (!ValidName(name)) return EINVAL;
  return 0;
}

bool AllowedXattr(std::string_view name) {
  auto starts = [&](std::string_view p) { return name.substr(0, p.size()) == p; };
  return (starts("user.") && name.size() > 5) || (starts("trusted.") && name.size() > 8) ||
         (starts("security.") && name.size() > 9) || name == "system.posix_acl_access" ||
         name == "system.posix_acl_default";
}

// Clears setuid, and setgid when group-executable (the kernel's rule).
uint32_t KillPrivs(uint32_t mode) {
  mode &= ~static_cast<uint32_t>(S_ISUID);
  if (mode & S_IXGRP) mode &= ~static_cast<uint32_t>(S_ISGID);
  return mode;
}

}  // namespace

Filesystem::Filesystem(const Options& options)
    : options_(options),
      clock_(options.clock ? options.clock : Clock::Real()),
      codec_(options.codec),
      store_(options.store),
      cache_(options.cache_bytes) {}

Result<std::unique_ptr<Filesystem>> Filesystem::Open(const Options& options) {
  if (options.codec == nullptr || options.store == nullptr) {
    return Status::InvalidArgument("filesystem needs a codec and a store");
  }
  std::unique_ptr<Filesystem> fs(new Filesystem(options));
  MetadataStore::Options mo;
  mo.path = options.metadata_path;
  mo.slice_size = options.slice_size;
  mo.volume_id = options.volume_id;
  mo.read_only = options.read_only;
  mo.root_uid = options.root_uid;
  mo.root_gid = options.root_gid;
  mo.now_ns = fs->NowNs();
  MESHFS_ASSIGN_OR_RETURN(fs->meta_, MetadataStore::Open(mo));
  fs->slice_size_ = fs->meta_->slice_size();
  if (!options.read_only) {
    MESHFS_ASSIGN_OR_RETURN(std::vector<uint64_t> orphans, fs->meta_->ListOrphans());
    if (!orphans.empty()) {
      MESHFS_RETURN_IF_ERROR(fs->meta_->Begin());
      for (uint64_t ino : orphans) {
        Status st = fs->meta_->DeleteInode(ino);
        if (!st.ok()) {
          fs->meta_->Rollback();
          return st;
        }
      }
      MESHFS_RETURN_IF_ERROR(fs->meta_->Commit(true));
      LogInfo(kLog, "removed " + std::to_string(orphans.size()) +
                        " unlinked file(s) left open by a previous mount");
    }
  }
  for (int i = 0; i < std::max(1, options.readahead_threads); ++i) {
    fs->ra_threads_.emplace_back([p = fs.get()] { p->ReadaheadLoop(); });
  }
  return fs;
}

Filesystem::~Filesystem() {
  {
    std::lock_guard<std::mutex> lock(ra_mu_);
    ra_stop_ = true;
  }
  ra_cv_.notify_all();
  for (auto& t : ra_threads_) t.join();
  if (!options_.read_only) {
    Status st = FlushAll(false);
    if (!st.ok()) LogWarn(kLog, "flush at shutdown failed: " + st.ToString());
  }
  std::lock_guard<std::mutex> lock(table_mu_);
  nodes_.clear();
}

int Filesystem::Err(const Status& s, std::string_view what) {
  int e = ToErrno(s);
  if (e == EIO || e == ENOSPC) LogWarn(kLog, std::string(what) + ": " + s.ToString());
  return e;
}

// ---------------------------------------------------------------- backend

Result<SliceBytes> Filesystem::LoadSlice(const SliceId& id) {
  if (SliceBytes hit = cache_.Get(id)) return hit;
  // One load per slice at a time: a read that arrives while read-ahead is
  // fetching the same slice waits for it instead of fetching it again.
  std::promise<Result<SliceBytes>> mine;
  std::shared_future<Result<SliceBytes>> theirs;
  {
    std::lock_guard<std::mutex> lock(load_mu_);
    auto it = loading_.find(id);
    if (it != loading_.end()) {
      theirs = it->second;
    } else {
      loading_.emplace(id, mine.get_future().share());
    }
  }
  if (theirs.valid()) return theirs.get();
  Result<SliceBytes> r = [&]() -> Result<SliceBytes> {
    if (SliceBytes hit = cache_.Get(id)) return hit;  // loaded meanwhile
    // Bytes from the peers are checked against `id` by the store; a cached
    // copy (checked when it was cached) is left to the AEAD tag, which fails
    // on any changed byte: a BLAKE2b pass less per slice on a warm read.
    bool checked = true;
    MESHFS_ASSIGN_OR_RETURN(SharedBlob blob, store_->GetToDecrypt(id, &checked));
    Result<std::string> decoded = codec_->Decode(id, *blob, /*address_verified=*/true);
    if (!checked && decoded.status().Is(Code::kCorruption)) {
      MESHFS_ASSIGN_OR_RETURN(blob, store_->ReplaceDamaged(id));
      decoded = codec_->Decode(id, *blob, /*address_verified=*/true);
    }
    MESHFS_ASSIGN_OR_RETURN(std::string plain, std::move(decoded));
    auto shared = BufferPool::Slices().Share(std::move(plain));
    cache_.Put(id, shared);
    return shared;
  }();
  mine.set_value(r);
  std::lock_guard<std::mutex> lock(load_mu_);
  loading_.erase(id);
  return r;
}

Result<SliceId> Filesystem::StoreSlice(std::string_view plaintext) {
  MESHFS_ASSIGN_OR_RETURN(EncodedSlice enc, codec_->Encode(plaintext));
  MESHFS_RETURN_IF_ERROR(store_->PutTrusted(enc.id, std::move(enc.blob)));
  // Not put in the plaintext cache: what was just written is in the
  // kernel's page cache, and streaming writes would only evict what reads
  // need from it.
  return enc.id;
}

Status Filesystem::CommitFile(uint64_t ino, const FileCommit& c) {
  std::lock_guard<std::mutex> lock(meta_mu_);
  auto rec = meta_->GetInode(ino);
  if (!rec.ok()) return rec.status().Is(Code::kNotFound) ? Status::OK() : rec.status();
  MESHFS_RETURN_IF_ERROR(meta_->Begin());
  Status st;
  if (c.delete_from) st = meta_->DeleteExtentsFrom(ino, *c.delete_from);
  for (uint64_t idx : c.remove) {
    if (st.ok()) st = meta_->DeleteExtent(ino, idx);
  }
  for (const auto& e : c.put) {
    if (st.ok()) st = meta_->PutExtent(ino, e);
  }
  if (st.ok() && c.set_inline) {
    st = meta_->SetInline(ino, c.inline_data ? std::optional<std::string_view>(*c.inline_data)
                                             : std::nullopt);
  }
  if (st.ok()) {
    rec->size = c.size;
    if (c.times) {
      rec->mtime_ns = c.mtime_ns;
      rec->ctime_ns = c.ctime_ns;
    }
    st = meta_->UpdateInode(*rec);
  }
  if (!st.ok()) {
    meta_->Rollback();
    return st;
  }
  return meta_->Commit(c.durable);
}

void Filesystem::Prefetch(const std::vector<SliceId>& ids) {
  {
    std::lock_guard<std::mutex> lock(ra_mu_);
    for (const auto& id : ids) {
      if (ra_inflight_.count(id)) continue;
      ra_inflight_.insert(id);
      ra_queue_.push_back(id);
    }
  }
  ra_cv_.notify_all();
}

void Filesystem::ReadaheadLoop() {
  NameThisThread("read-ahead");
  for (;;) {
    SliceId id;
    {
      std::unique_lock<std::mutex> lock(ra_mu_);
      ra_cv_.wait(lock, [&] { return ra_stop_ || !ra_queue_.empty(); });
      if (ra_stop_) return;
      id = ra_queue_.front();
      ra_queue_.pop_front();
    }
    auto r = LoadSlice(id);  // warms the cache; errors show up on the real read
    (void)r;
    std::lock_guard<std::mutex> lock(ra_mu_);
    ra_inflight_.erase(id);
  }
}

// ---------------------------------------------------------------- inode table

void Filesystem::AddLookup(uint64_t ino) {
  std::lock_guard<std::mutex> lock(table_mu_);
  nodes_[ino].nlookup++;
}

uint64_t Filesystem::lookup_count(uint64_t ino) {
  std::lock_guard<std::mutex> lock(table_mu_);
  auto it = nodes_.find(ino);
  return it == nodes_.end() ? 0 : it->second.nlookup;
}

void Filesystem::Forget(uint64_t ino, uint64_t n) {
  std::lock_guard<std::mutex> lock(table_mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return;
  Node& node = it->second;
  node.nlookup = node.nlookup > n ? node.nlookup - n : 0;
  // Data without an open handle is what a failed write-back kept for
  // another try (close or truncate): it stays until FlushAll stores it.
  if (node.nlookup == 0 && node.nopen == 0 && !node.data) nodes_.erase(it);
}

std::shared_ptr<FileData> Filesystem::DataOf(uint64_t ino) {
  std::lock_guard<std::mutex> lock(table_mu_);
  auto it = nodes_.find(ino);
  return it == nodes_.end() ? nullptr : it->second.data;
}

Result<std::shared_ptr<FileData>> Filesystem::LoadData(uint64_t ino) {
  if (auto d = DataOf(ino)) return d;
  std::shared_ptr<FileData> data;
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    MESHFS_ASSIGN_OR_RETURN(InodeRecord rec, meta_->GetInode(ino));
    MESHFS_ASSIGN_OR_RETURN(std::optional<std::string> inl, meta_->GetInline(ino));
    std::vector<ExtentRecord> extents;
    if (!inl) {
      MESHFS_ASSIGN_OR_RETURN(extents, meta_->ListExtents(ino));
    }
    data = std::make_shared<FileData>(ino, slice_size_, rec.size, std::move(inl), extents,
                                      static_cast<FileDataBackend*>(this),
                                      options_.dirty_max, &writeback_);
  }
  std::lock_guard<std::mutex> lock(table_mu_);
  Node& node = nodes_[ino];
  if (!node.data) node.data = std::move(data);
  return node.data;
}

void Filesystem::Overlay(Attr* a) {
  if (!S_ISREG(a->mode)) return;
  auto data = DataOf(a->ino);
  if (!data) return;
  a->size = data->size();
  a->blocks = (data->allocated() + 511) / 512;
  auto [m, c] = data->pending_times();
  if (m != 0) {
    a->mtime_ns = m;
    a->ctime_ns = c;
  }
}

void Filesystem::MaybeReap(uint64_t ino) {
  std::shared_ptr<FileData> data;
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    auto rec = meta_->GetInode(ino);
    if (!rec.ok() || rec->nlink != 0) return;
    {
      std::lock_guard<std::mutex> tl(table_mu_);
      auto it = nodes_.find(ino);
      if (it != nodes_.end()) {
        if (it->second.nopen > 0) return;
        data = std::move(it->second.data);
      }
    }
    Status st = meta_->Begin();
    if (st.ok()) st = meta_->DeleteInode(ino);
    if (st.ok()) st = meta_->Commit();
    else meta_->Rollback();
    if (!st.ok()) {
      LogWarn(kLog, "removing unlinked inode " + std::to_string(ino) + ": " + st.ToString());
    }
  }
  // Outside the metadata lock: the file's lock comes first in the lock order.
  if (data) data->Discard();
}

// ---------------------------------------------------------------- attributes

namespace {

void ToAttr(const InodeRecord& r, Attr* out) {
  out->ino = r.ino;
  out->mode = r.mode;
  out->uid = r.uid;
  out->gid = r.gid;
  out->nlink = r.nlink;
  out->size = S_ISDIR(r.mode) ? 4096 : r.size;
  out->blocks = S_ISDIR(r.mode) ? 8 : (r.alloc + 511) / 512;
  out->atime_ns = r.atime_ns;
  out->mtime_ns = r.mtime_ns;
  out->ctime_ns = r.ctime_ns;
  out->btime_ns = r.btime_ns;
  out->rdev = r.rdev;
  out->gen = r.gen;
}

}  // namespace

bool Filesystem::PendingCreateLocked(uint64_t ino) {
  if (!meta_->has_pending()) {
    uncommitted_creates_.clear();
    return false;
  }
  return uncommitted_creates_.count(ino) > 0;
}

int Filesystem::AttrLocked(uint64_t ino, Attr* out) {
  auto rec = meta_->GetInode(ino);
  if (!rec.ok()) return Err(rec.status(), "getattr");
  ToAttr(*rec, out);
  return 0;
}

int Filesystem::GetAttr(uint64_t ino, Attr* out) {
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    if (int e = AttrLocked(ino, out)) return e;
  }
  Overlay(out);
  return 0;
}

int Filesystem::SetAttr(const Caller& /*c*/, uint64_t ino, const SetAttrRequest& req, Attr* out) {
  store_->NoteWriteActivity();
  if (options_.read_only) return EROFS;
  const int64_t now = NowNs();
  {
    std::lock_guard<std::mutex> lock(table_mu_);
    if (auto it = nodes_.find(ino); it != nodes_.end()) it->second.atime_checked_until_ns = 0;
  }
  // With the write-back cache the kernel reports the times of cached writes
  // with a setattr of mtime and ctime just before it flushes the file. For an
  // open file they become the file's pending times, committed by its next
  // flush together with the data they describe (one commit, not two).
  if (req.mtime_ns && !req.size && !req.mode && !req.uid && !req.gid && !req.atime_ns) {
    const int64_t mtime = *req.mtime_ns == SetAttrRequest::kTimeNow ? now : *req.mtime_ns;
    const int64_t ctime =
        req.ctime_ns ? (*req.ctime_ns == SetAttrRequest::kTimeNow ? now : *req.ctime_ns) : now;
    std::shared_ptr<FileData> open_data;
    {
      std::lock_guard<std::mutex> lock(table_mu_);
      auto it = nodes_.find(ino);
      if (it != nodes_.end() && it->second.nopen > 0) open_data = it->second.data;
    }
    if (open_data && mtime != 0) {
      open_data->SetPendingTimes(mtime, ctime);
      return GetAttr(ino, out);
    }
  }
  if (req.size) {
    if (*req.size > kMaxFileSize) return EFBIG;
    InodeRecord rec;
    {
      std::lock_guard<std::mutex> lock(meta_mu_);
      auto r = meta_->GetInode(ino);
      if (!r.ok()) return Err(r.status(), "truncate");
      rec = *r;
    }
    if (S_ISDIR(rec.mode)) return EISDIR;
    if (!S_ISREG(rec.mode)) return EINVAL;
    auto data = LoadData(ino);
    if (!data.ok()) return Err(data.status(), "truncate");
    {
      // Like a writer for the time of the truncate: no page read before it
      // may reach the kernel after it (it would bring the old length back).
      std::unique_lock<std::mutex> lock(table_mu_);
      if (!AddWriterLocked(lock, ino)) return EAGAIN;
    }
    Status st = (*data)->Truncate(*req.size);
    {
      std::lock_guard<std::mutex> lock(table_mu_);
      Node& node = nodes_[ino];
      if (node.writers > 0) node.writers--;
      ContentsChangingLocked(node);
    }
    // A cut partial slice is a dirty buffer: write it back now, so the
    // FileData of a file nobody has open can be dropped.
    if (st.ok()) st = (*data)->Flush(false);
    {
      std::lock_guard<std::mutex> lock(table_mu_);
      auto it = nodes_.find(ino);
      if (it != nodes_.end() && it->second.nopen == 0 && st.ok()) it->second.data.reset();
    }
    if (!st.ok()) return Err(st, "truncate");
  }
  bool explicit_mtime = false;
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    auto r = meta_->GetInode(ino);
    if (!r.ok()) return Err(r.status(), "setattr");
    InodeRecord rec = *r;
    bool changed = req.size.has_value();
    if (req.mode) {
      rec.mode = (rec.mode & S_IFMT) | (*req.mode & 07777);
      changed = true;
    }
    if (req.uid || req.gid) {
      if (req.uid) rec.uid = *req.uid;
      if (req.gid) rec.gid = *req.gid;
      if (!S_ISDIR(rec.mode) && !req.mode) rec.mode = KillPrivs(rec.mode);
      changed = true;
    }
    if (req.atime_ns) {
      rec.atime_ns = *req.atime_ns == SetAttrRequest::kTimeNow ? now : *req.atime_ns;
      changed = true;
    }
    if (req.mtime_ns) {
      rec.mtime_ns = *req.mtime_ns == SetAttrRequest::kTimeNow ? now : *req.mtime_ns;
      explicit_mtime = true;
      changed = true;
    }
    if (changed) {
      rec.ctime_ns = req.ctime_ns ? (*req.ctime_ns == SetAttrRequest::kTimeNow ? now : *req.ctime_ns)
                                  : now;
      if (req.size) {
        // The truncation committed size and mtime already; keep them.
        auto fresh = meta_->GetInode(ino);
        if (fresh.ok()) {
          rec.size = fresh->size;
          if (!req.mtime_ns) rec.mtime_ns = fresh->mtime_ns;
        }
      }
      // Committed with the next change, flush or fsync instead of now: a
      // change to a file whose create is not committed yet either (rsync's
      // fchmod of its new temporary file), and the ctime refresh the kernel
      // sends after a rename (mtime as stored, ctime a moment after ours).
      const bool defer =
          !req.size && (PendingCreateLocked(ino) ||
                        (!req.mode && !req.uid && !req.gid && !req.atime_ns &&
                         rec.mtime_ns == r->mtime_ns));
      Status st = meta_->Begin();
      if (st.ok()) st = meta_->UpdateInode(rec);
      if (st.ok()) st = defer ? meta_->CommitLater() : meta_->Commit();
      else meta_->Rollback();
      if (!st.ok()) return Err(st, "setattr");
    }
    if (req.size) {
      if (int e = AttrLocked(ino, out)) return e;
    } else {
      ToAttr(rec, out);  // rec.alloc as read above: the stored bytes did not change
    }
  }
  if (explicit_mtime) {
    if (auto data = DataOf(ino)) data->ClearPendingTimes();
  }
  Overlay(out);
  return 0;
}

// ---------------------------------------------------------------- names

int Filesystem::Lookup(uint64_t parent, std::string_view name, Attr* out) {
  if (name.size() > kNameMax) return ENAMETOOLONG;
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    uint64_t ino;
    if (name == "." || name == "..") {
      auto prec = meta_->GetInode(parent);
      if (!prec.ok()) return Err(prec.status(), "lookup");
      if (!S_ISDIR(prec->mode)) return ENOTDIR;
      ino = parent;
      if (name == "..") {
        auto p = meta_->ParentOf(parent);
        if (!p.ok()) return Err(p.status(), "lookup");
        ino = *p;
      }
    } else {
      auto r = meta_->Lookup(parent, name);
      if (r.ok()) {
        ino = *r;  // only a directory has entries: no need to read the parent
      } else if (!r.status().Is(Code::kNotFound)) {
        return Err(r.status(), "lookup");
      } else {
        auto prec = meta_->GetInode(parent);
        if (!prec.ok()) return Err(prec.status(), "lookup");
        return S_ISDIR(prec->mode) ? ENOENT : ENOTDIR;
      }
    }
    if (int e = AttrLocked(ino, out)) return e;
  }
  Overlay(out);
  AddLookup(out->ino);
  return 0;
}

int Filesystem::NewNodeLocked(const Caller& c, uint64_t parent, std::string_view name,
                              uint32_t mode, uint64_t rdev, std::string_view target, Attr* out,
                              bool defer_commit, bool known_absent) {
  if (options_.read_only) return EROFS;
  if (int e = CheckName(name)) return e;
  auto prec = meta_->GetInode(parent);
  if (!prec.ok()) return Err(prec.status(), "create");
  InodeRecord p = *prec;
  if (!S_ISDIR(p.mode)) return ENOTDIR;
  if (p.nlink == 0) return ENOENT;  // the directory was removed
  if (name == "." || name == "..") return EEXIST;
  if (!known_absent) {
    auto existing = meta_->Lookup(parent, name);
    if (existing.ok()) return EEXIST;
    if (!existing.status().Is(Code::kNotFound)) return Err(existing.status(), "create");
  }

  // A default ACL on the parent replaces the umask (as on Linux file
  // systems with ACLs); the kernel's FUSE client leaves both to us.
  std::optional<InheritedAcl> acl;
  if (!S_ISLNK(mode)) {
    auto def = meta_->GetXattr(parent, kAclDefaultXattr);
    if (def.ok()) acl = InheritAcl(*def, mode, S_ISDIR(mode));
    else if (!def.status().Is(Code::kNotFound)) return Err(def.status(), "create");
    if (acl) mode = (mode & ~0777u) | acl->mode;
    else mode &= ~(c.umask & 0777u);
  }

  const int64_t now = NowNs();
  InodeRecord r;
  r.mode = mode;
  r.uid = c.uid;
  r.gid = c.gid;
  if (p.mode & S_ISGID) {
    r.gid = p.gid;
    if (S_ISDIR(mode)) r.mode |= S_ISGID;
  }
  r.nlink = S_ISDIR(mode) ? 2 : 1;
  r.size = S_ISLNK(mode) ? target.size() : 0;
  r.atime_ns = r.mtime_ns = r.ctime_ns = r.btime_ns = now;
  r.rdev = rdev;
  r.gen = 1;

  Status st = meta_->Begin();
  if (!st.ok()) return Err(st, "create");
  auto ino = meta_->InsertInode(r, target);
  st = ino.ok() ? meta_->InsertDentry(parent, name, *ino) : ino.status();
  if (st.ok() && acl && acl->access) st = meta_->SetXattr(*ino, kAclAccessXattr, *acl->access);
  if (st.ok() && acl && acl->default_acl) {
    st = meta_->SetXattr(*ino, kAclDefaultXattr, *acl->default_acl);
  }
  if (st.ok()) {
    if (S_ISDIR(mode)) p.nlink++;
    p.mtime_ns = p.ctime_ns = now;
    st = meta_->UpdateInode(p);
  }
  if (st.ok()) st = defer_commit ? meta_->CommitLater() : meta_->Commit();
  else meta_->Rollback();
  if (!st.ok()) return Err(st, "create");
  r.ino = *ino;
  r.alloc = 0;
  ToAttr(r, out);
  return 0;
}

int Filesystem::Mknod(const Caller& c, uint64_t parent, std::string_view name, uint32_t mode,
                      uint64_t rdev, Attr* out) {
  store_->NoteWriteActivity();
  uint32_t type = mode & S_IFMT;
  if (type == 0) type = S_IFREG;
  if (type == S_IFDIR) return EPERM;
  if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK && type != S_IFCHR &&
      type != S_IFBLK) {
    return EINVAL;
  }
  if (type != S_IFCHR && type != S_IFBLK) rdev = 0;
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    if (int e = NewNodeLocked(c, parent, name, type | (mode & 07777), rdev, {}, out)) return e;
  }
  AddLookup(out->ino);
  return 0;
}

int Filesystem::Mkdir(const Caller& c, uint64_t parent, std::string_view name, uint32_t mode,
                      Attr* out) {
  store_->NoteWriteActivity();
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    if (int e = NewNodeLocked(c, parent, name, S_IFDIR | (mode & 07777), 0, {}, out)) return e;
  }
  AddLookup(out->ino);
  return 0;
}

int Filesystem::Symlink(const Caller& c, uint64_t parent, std::string_view name,
                        std::string_view target, Attr* out) {
  store_->NoteWriteActivity();
  if (target.size() >= kPathMax) return ENAMETOOLONG;
  if (target.empty()) return ENOENT;
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    if (int e = NewNodeLocked(c, parent, name, S_IFLNK | 0777, 0, target, out)) return e;
  }
  AddLookup(out->ino);
  return 0;
}

int Filesystem::Readlink(uint64_t ino, std::string* target) {
  std::lock_guard<std::mutex> lock(meta_mu_);
  auto rec = meta_->GetInode(ino);
  if (!rec.ok()) return Err(rec.status(), "readlink");
  if (!S_ISLNK(rec->mode)) return EINVAL;
  auto t = meta_->GetTarget(ino);
  if (!t.ok()) return Err(t.status(), "readlink");
  *target = std::move(*t);
  return 0;
}

int Filesystem::Link(uint64_t ino, uint64_t new_parent, std::string_view new_name, Attr* out) {
  store_->NoteWriteActivity();
  if (options_.read_only) return EROFS;
  if (int e = CheckName(new_name)) return e;
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    auto rec = meta_->GetInode(ino);
    if (!rec.ok()) return Err(rec.status(), "link");
    if (S_ISDIR(rec->mode)) return EPERM;
    if (rec->nlink == 0) return ENOENT;
    auto prec = meta_->GetInode(new_parent);
    if (!prec.ok()) return Err(prec.status(), "link");
    if (!S_ISDIR(prec->mode)) return ENOTDIR;
    if (prec->nlink == 0) return ENOENT;
    auto existing = meta_->Lookup(new_parent, new_name);
    if (existing.ok() || new_name == "." || new_name == "..") return EEXIST;
    const int64_t now = NowNs();
    InodeRecord r = *rec, p = *prec;
    r.nlink++;
    r.ctime_ns = now;
    p.mtime_ns = p.ctime_ns = now;
    Status st = meta_->Begin();
    if (st.ok()) st = meta_->InsertDentry(new_parent, new_name, ino);
    if (st.ok()) st = meta_->UpdateInode(r);
    if (st.ok()) st = meta_->UpdateInode(p);
    if (st.ok()) st = meta_->Commit();
    else meta_->Rollback();
    if (!st.ok()) return Err(st, "link");
    if (int e = AttrLocked(ino, out)) return e;
  }
  Overlay(out);
  AddLookup(ino);
  return 0;
}

Filesystem::DeletedData::~DeletedData() {
  if (data) data->Discard();
}

std::shared_ptr<FileData> Filesystem::TakeDataOfDeleted(uint64_t ino) {
  std::lock_guard<std::mutex> lock(table_mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return nullptr;
  return std::move(it->second.data);
}

// Lowers the link count of a non-directory `rec` inside a transaction;
// deletes it when no link and no open handle remain.
int Filesystem::DropLinkLocked(uint64_t ino, const InodeRecord& rec, bool* deleted) {
  InodeRecord r = rec;
  r.nlink = r.nlink > 0 ? r.nlink - 1 : 0;
  r.ctime_ns = NowNs();
  *deleted = false;
  Status st;
  if (r.nlink == 0) {
    bool open = false;
    {
      std::lock_guard<std::mutex> lock(table_mu_);
      auto it = nodes_.find(ino);
      open = it != nodes_.end() && it->second.nopen > 0;
    }
    if (open) {
      st = meta_->UpdateInode(r);  // an orphan until the last close
    } else {
      st = meta_->DeleteInode(ino);
      *deleted = true;
    }
  } else {
    st = meta_->UpdateInode(r);
  }
  return st.ok() ? 0 : Err(st, "unlink");
}

int Filesystem::Unlink(uint64_t parent, std::string_view name) {
  store_->NoteWriteActivity();
  int e = UnlinkOnce(parent, name);
  if (e == ENOSPC && ReleaseReserve()) e = UnlinkOnce(parent, name);
  return e;
}

int Filesystem::Rmdir(uint64_t parent, std::string_view name) {
  store_->NoteWriteActivity();
  int e = RmdirOnce(parent, name);
  if (e == ENOSPC && ReleaseReserve()) e = RmdirOnce(parent, name);
  return e;
}

bool Filesystem::ReleaseReserve() {
  std::lock_guard<std::mutex> lock(meta_mu_);
  return meta_->ReleaseReserve();
}

int Filesystem::UnlinkOnce(uint64_t parent, std::string_view name) {
  if (options_.read_only) return EROFS;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  DeletedData gone;
  std::lock_guard<std::mutex> lock(meta_mu_);
  auto prec = meta_->GetInode(parent);
  if (!prec.ok()) return Err(prec.status(), "unlink");
  if (!S_ISDIR(prec->mode)) return ENOTDIR;
  auto ino = meta_->Lookup(parent, name);
  if (!ino.ok()) return ino.status().Is(Code::kNotFound) ? ENOENT : Err(ino.status(), "unlink");
  auto rec = meta_->GetInode(*ino);
  if (!rec.ok()) return Err(rec.status(), "unlink");
  if (S_ISDIR(rec->mode)) return EISDIR;
  InodeRecord p = *prec;
  p.mtime_ns = p.ctime_ns = NowNs();
  Status st = meta_->Begin();
  if (!st.ok()) return Err(st, "unlink");
  bool deleted = false;
  st = meta_->DeleteDentry(parent, name);
  int e = st.ok() ? DropLinkLocked(*ino, *rec, &deleted) : Err(st, "unlink");
  if (e == 0) {
    st = meta_->UpdateInode(p);
    if (st.ok()) st = meta_->Commit();
    if (!st.ok()) e = Err(st, "unlink");
  }
  if (e != 0) {
    meta_->Rollback();
  } else if (deleted) {
    gone.data = TakeDataOfDeleted(*ino);
  }
  return e;
}

int Filesystem::RmdirOnce(uint64_t parent, std::string_view name) {
  if (options_.read_only) return EROFS;
  if (name.size() > kNameMax) return ENAMETOOLONG;
  if (name == ".") return EINVAL;
  if (name == "..") return ENOTEMPTY;
  std::lock_guard<std::mutex> lock(meta_mu_);
  auto prec = meta_->GetInode(parent);
  if (!prec.ok()) return Err(prec.status(), "rmdir");
  if (!S_ISDIR(prec->mode)) return ENOTDIR;
  auto ino = meta_->Lookup(parent, name);
  if (!ino.ok()) return ino.status().Is(Code::kNotFound) ? ENOENT : Err(ino.status(), "rmdir");
  auto rec = meta_->GetInode(*ino);
  if (!rec.ok()) return Err(rec.status(), "rmdir");
  if (!S_ISDIR(rec->mode)) return ENOTDIR;
  auto empty = meta_->DirIsEmpty(*ino);
  if (!empty.ok()) return Err(empty.status(), "rmdir");
  if (!*empty) return ENOTEMPTY;
  InodeRecord p = *prec;
  p.nlink--;
  p.mtime_ns = p.ctime_ns = NowNs();
  Status st = meta_->Begin();
  if (st.ok()) st = meta_->DeleteDentry(parent, name);
  if (st.ok()) st = meta_->DeleteInode(*ino);
  if (st.ok()) st = meta_->UpdateInode(p);
  if (st.ok()) st = meta_->Commit();
  else meta_->Rollback();
  return st.ok() ? 0 : Err(st, "rmdir");
}

int Filesystem::Rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                       std::string_view new_name, unsigned flags) {
  store_->NoteWriteActivity();
  if (options_.read_only) return EROFS;
  if (flags & ~static_cast<unsigned>(RENAME_NOREPLACE | RENAME_EXCHANGE)) return EINVAL;
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) return EINVAL;
  if (name.size() > kNameMax || new_name.size() > kNameMax) return ENAMETOOLONG;
  if (name == "." || name == ".." || new_name == "." || new_name == "..") return EBUSY;
  if (int e = CheckName(new_name)) return e;
  DeletedData gone;
  std::lock_guard<std::mutex> lock(meta_mu_);
  auto prec = meta_->GetInode(parent);
  if (!prec.ok()) return Err(prec.status(), "rename");
  auto nprec = meta_->GetInode(new_parent);
  if (!nprec.ok()) return Err(nprec.status(), "rename");
  if (!S_ISDIR(prec->mode) || !S_ISDIR(nprec->mode)) return ENOTDIR;
  auto src = meta_->Lookup(parent, name);
  if (!src.ok()) return src.status().Is(Code::kNotFound) ? ENOENT : Err(src.status(), "rename");
  auto srec = meta_->GetInode(*src);
  if (!srec.ok()) return Err(srec.status(), "rename");
  std::optional<uint64_t> dst;
  std::optional<InodeRecord> drec;
  if (auto d = meta_->Lookup(new_parent, new_name); d.ok()) {
    dst = *d;
    auto r = meta_->GetInode(*d);
    if (!r.ok()) return Err(r.status(), "rename");
    drec = *r;
  } else if (!d.status().Is(Code::kNotFound)) {
    return Err(d.status(), "rename");
  }
  if ((flags & RENAME_EXCHANGE) && !dst) return ENOENT;
  if ((flags & RENAME_NOREPLACE) && dst) return EEXIST;
  if (dst && *dst == *src) return 0;  // the same file: nothing to do

  const bool sdir = S_ISDIR(srec->mode);
  const bool ddir = drec && S_ISDIR(drec->mode);
  // Moving a directory into itself or below it.
  auto below = [&](uint64_t dir, uint64_t start) -> Result<bool> {
    for (uint64_t d = start;;) {
      if (d == dir) return true;
      if (d == kRootIno) return false;
      MESHFS_ASSIGN_OR_RETURN(d, meta_->ParentOf(d));
    }
  };
  if (sdir && parent != new_parent) {
    auto b = below(*src, new_parent);
    if (!b.ok()) return Err(b.status(), "rename");
    if (*b) return EINVAL;
  }
  if ((flags & RENAME_EXCHANGE) && ddir && parent != new_parent) {
    auto b = below(*dst, parent);
    if (!b.ok()) return Err(b.status(), "rename");
    if (*b) return EINVAL;
  }
  if (!(flags & RENAME_EXCHANGE) && dst) {
    if (sdir && !ddir) return ENOTDIR;
    if (!sdir && ddir) return EISDIR;
    if (ddir) {
      auto empty = meta_->DirIsEmpty(*dst);
      if (!empty.ok()) return Err(empty.status(), "rename");
      if (!*empty) return ENOTEMPTY;
    }
  }

  const int64_t now = NowNs();
  InodeRecord p = *prec;
  InodeRecord np_other = *nprec;
  InodeRecord& np = parent == new_parent ? p : np_other;  // one record when equal
  InodeRecord s = *srec;
  s.ctime_ns = now;
  Status st = meta_->Begin();
  if (!st.ok()) return Err(st, "rename");
  int e = 0;
  bool dst_deleted = false;
  auto fail = [&](const Status& bad) { e = Err(bad, "rename"); };
  if (flags & RENAME_EXCHANGE) {
    InodeRecord d = *drec;
    d.ctime_ns = now;
    if (!(st = meta_->RepointDentry(parent, name, *dst)).ok() ||
        !(st = meta_->RepointDentry(new_parent, new_name, *src)).ok() ||
        !(st = meta_->UpdateInode(s)).ok() || !(st = meta_->UpdateInode(d)).ok()) {
      fail(st);
    }
    if (parent != new_parent && sdir != ddir) {
      if (sdir) {
        p.nlink--;
        np.nlink++;
      } else {
        p.nlink++;
        np.nlink--;
      }
    }
  } else {
    if (dst) {
      if (!(st = meta_->RepointDentry(new_parent, new_name, *src)).ok()) fail(st);
      if (e == 0 && ddir) {
        np.nlink--;  // the replaced directory's ".."
        if (!(st = meta_->DeleteInode(*dst)).ok()) fail(st);
      } else if (e == 0) {
        e = DropLinkLocked(*dst, *drec, &dst_deleted);
      }
      if (e == 0 && !(st = meta_->DeleteDentry(parent, name)).ok()) fail(st);
    } else if (!(st = meta_->MoveDentry(parent, name, new_parent, new_name)).ok()) {
      fail(st);  // a new name: the entry itself moves (and keeps its readdir position)
    }
    if (e == 0 && !(st = meta_->UpdateInode(s)).ok()) fail(st);
    if (sdir && parent != new_parent) {
      p.nlink--;
      np.nlink++;
    }
  }
  if (e == 0) {
    p.mtime_ns = p.ctime_ns = np.mtime_ns = np.ctime_ns = now;
    if (!(st = meta_->UpdateInode(p)).ok()) fail(st);
    if (e == 0 && parent != new_parent && !(st = meta_->UpdateInode(np)).ok()) fail(st);
  }
  if (e == 0 && !(st = meta_->Commit()).ok()) fail(st);
  if (e != 0) {
    meta_->Rollback();
  } else if (dst_deleted) {
    gone.data = TakeDataOfDeleted(*dst);
  }
  return e;
}

// ---------------------------------------------------------------- files

int Filesystem::Create(const Caller& c, uint64_t parent, std::string_view name, uint32_t mode,
                       int flags, Attr* out, uint64_t* fh) {
  store_->NoteWriteActivity();
  if (options_.read_only) return EROFS;
  bool exists = false;
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    if (name.size() > kNameMax) return ENAMETOOLONG;
    auto existing = meta_->Lookup(parent, name);
    if (existing.ok()) {
      if (flags & O_EXCL) return EEXIST;
      exists = true;
      if (int e = AttrLocked(*existing, out)) return e;
      if (S_ISDIR(out->mode)) return EISDIR;
    } else if (!existing.status().Is(Code::kNotFound)) {
      return Err(existing.status(), "create");
    } else if (int e = NewNodeLocked(c, parent, name, S_IFREG | (mode & 07777), 0, {}, out,
                                     /*defer_commit=*/true, /*known_absent=*/true)) {
      // The new inode and entry are committed with the file's first flush
      // (close), together with its contents and times; any other change
      // commits them earlier.
      return e;
    } else {
      if (!meta_->has_pending()) uncommitted_creates_.clear();
      uncommitted_creates_.insert(out->ino);
    }
  }
  if (int e = Open(c, out->ino, exists ? flags : (flags & ~O_TRUNC), fh)) return e;
  Overlay(out);
  AddLookup(out->ino);
  return 0;
}

int Filesystem::Open(const Caller& /*c*/, uint64_t ino, int flags, uint64_t* fh) {
  const bool writing = IsWriting(flags);
  InodeRecord rec;
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    auto r = meta_->GetInode(ino);
    if (!r.ok()) return Err(r.status(), "open");
    rec = *r;
  }
  if (S_ISDIR(rec.mode)) return writing ? EISDIR : 0;
  if (writing && options_.read_only) return EROFS;
  if (!S_ISREG(rec.mode)) return 0;
  auto data = LoadData(ino);
  if (!data.ok()) return Err(data.status(), "open");
  {
    std::unique_lock<std::mutex> lock(table_mu_);
    Node& node = nodes_[ino];
    if (!node.data) node.data = *data;
    node.nopen++;
    if (writing && !AddWriterLocked(lock, ino)) {
      node.nopen--;
      return EAGAIN;
    }
    *fh = next_fh_++;
    handles_[*fh] = Handle{ino, flags, false};
  }
  if ((flags & O_TRUNC) && writing) {
    Status st = (*data)->Truncate(0);
    if (st.ok()) st = (*data)->Commit();
    if (!st.ok()) {
      int e = Err(st, "open");
      (void)Release(ino, *fh);
      return e;
    }
  }
  return 0;
}

int Filesystem::Read(uint64_t ino, uint64_t fh, uint64_t off, uint64_t len,
                     std::string* out, std::vector<PagePush>* push) {
  ReadBuffer b;
  int e = Read(ino, fh, off, len, &b, push);
  if (e == 0) *out = std::move(b).Take();
  return e;
}

int Filesystem::Read(uint64_t ino, uint64_t /*fh*/, uint64_t off, uint64_t len,
                     ReadBuffer* out, std::vector<PagePush>* push) {
  std::shared_ptr<FileData> data;
  uint64_t gen = 0;
  bool check_atime = false;
  const int64_t now = NowNs();
  {
    std::lock_guard<std::mutex> lock(table_mu_);
    auto it = nodes_.find(ino);
    if (it == nodes_.end() || !it->second.data) return EBADF;
    data = it->second.data;
    if (it->second.data_gen == 0) it->second.data_gen = ++next_gen_;  // new in the table
    gen = it->second.data_gen;
    if (it->second.writers > 0) push = nullptr;  // the kernel's pages may be newer
    check_atime = !options_.read_only && now >= it->second.atime_checked_until_ns;
  }
  std::vector<std::pair<uint64_t, std::string>> rest;
  Status st = data->Read(off, len, out, push ? &rest : nullptr);
  if (!st.ok()) return Err(st, "read");
  for (auto& [at, bytes] : rest) push->push_back(PagePush{at, std::move(bytes), gen});
  if (!check_atime) return 0;
  // relatime: update atime when it is older than mtime/ctime or a day old.
  // Once checked, reads skip this until a write or an hour later.
  // (The file's own lock is taken before, never under, the metadata lock.)
  auto [pm, pc] = data->pending_times();
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    auto rec = meta_->GetInode(ino);
    if (!rec.ok()) return 0;
    int64_t mtime = pm ? pm : rec->mtime_ns, ctime = pc ? pc : rec->ctime_ns;
    if (rec->atime_ns <= mtime || rec->atime_ns <= ctime || now - rec->atime_ns > kDayNs) {
      InodeRecord r = *rec;
      r.atime_ns = now;
      if (!meta_->Begin().ok()) return 0;
      if (!meta_->UpdateInode(r).ok() || !meta_->Commit().ok()) {
        meta_->Rollback();
        return 0;
      }
    }
  }
  std::lock_guard<std::mutex> lock(table_mu_);
  auto it = nodes_.find(ino);
  if (it != nodes_.end() && it->second.data_gen == gen) {
    it->second.atime_checked_until_ns = now + kHourNs;
  }
  return 0;
}

void Filesystem::PushPages(uint64_t ino, const PagePush& p, const std::function<void()>& store) {
  {
    std::lock_guard<std::mutex> lock(table_mu_);
    auto it = nodes_.find(ino);
    if (it == nodes_.end() || it->second.writers > 0 || it->second.data_gen != p.generation) {
      return;
    }
    pushing_[ino]++;
  }
  store();
  pushed_bytes_.fetch_add(p.data.size(), std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(table_mu_);
  auto it = pushing_.find(ino);
  if (it != pushing_.end() && --it->second == 0) {
    pushing_.erase(it);
    push_cv_.notify_all();
  }
}

bool Filesystem::AddWriterLocked(std::unique_lock<std::mutex>& lock, uint64_t ino) {
  // From here on no page read before reaches the kernel; pushes still
  // running finish before the writer can write.
  nodes_[ino].writers++;
  ContentsChangingLocked(nodes_[ino]);
  if (push_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return !pushing_.count(ino); })) {
    return true;
  }
  if (nodes_[ino].writers > 0) nodes_[ino].writers--;
  LogWarn(kLog, "inode " + std::to_string(ino) +
                    ": a page-cache push did not finish in 10 s; refusing the change (EAGAIN)");
  return false;
}

void Filesystem::ContentsChangingLocked(Node& node) {
  node.data_gen = ++next_gen_;
  node.atime_checked_until_ns = 0;
}

int Filesystem::Write(const Caller& c, uint64_t ino, uint64_t fh, uint64_t off,
                      std::string_view data, size_t* written) {
  store_->NoteWriteActivity();
  if (options_.read_only) return EROFS;
  int flags = 0;
  bool first = false;
  std::shared_ptr<FileData> fd;
  {
    std::lock_guard<std::mutex> lock(table_mu_);
    auto h = handles_.find(fh);
    if (h == handles_.end() || h->second.ino != ino) return EBADF;
    flags = h->second.flags;
    auto it = nodes_.find(ino);
    if (it != nodes_.end()) fd = it->second.data;
    first = !h->second.privs_checked;
    h->second.privs_checked = true;
    if (it != nodes_.end()) it->second.atime_checked_until_ns = 0;
  }
  if (!fd) return EBADF;
  if (off + data.size() > kMaxFileSize || off + data.size() < off) return EFBIG;
  if (first && !c.is_root()) {
    std::lock_guard<std::mutex> lock(meta_mu_);
    auto rec = meta_->GetInode(ino);
    if (rec.ok() && KillPrivs(rec->mode) != rec->mode) {
      InodeRecord r = *rec;
      r.mode = KillPrivs(r.mode);
      if (meta_->Begin().ok()) {
        if (meta_->UpdateInode(r).ok()) (void)meta_->Commit();
        else meta_->Rollback();
      }
    }
  }
  Status st = fd->Write(off, data, (flags & O_APPEND) != 0);
  if (!st.ok()) return Err(st, "write");
  *written = data.size();
  // Mount-wide bound: when all open files together hold more than
  // dirty_max, write back the others too (each file bounds itself).
  if (dirty_total_.load() > static_cast<int64_t>(options_.dirty_max)) {
    std::vector<std::shared_ptr<FileData>> others;
    {
      std::lock_guard<std::mutex> lock(table_mu_);
      for (auto& [i, node] : nodes_) {
        if (node.data && node.data != fd) others.push_back(node.data);
      }
    }
    for (auto& o : others) {
      if (dirty_total_.load() <= static_cast<int64_t>(options_.dirty_max) / 2) break;
      if (o->dirty_bytes() == 0) continue;
      Status ost = o->Flush(false);
      if (!ost.ok()) LogWarn(kLog, "write-back under memory pressure: " + ost.ToString());
    }
  }
  return 0;
}

int Filesystem::Flush(uint64_t ino, uint64_t /*fh*/) {
  if (options_.read_only) return 0;
  if (auto data = DataOf(ino)) {
    Status st = data->Flush(false);
    if (!st.ok()) return Err(st, "flush");
  }
  // close(2) returns with everything committed, also a create whose commit
  // was deferred and a file with nothing to write.
  std::lock_guard<std::mutex> lock(meta_mu_);
  Status st = meta_->CommitPending();
  return st.ok() ? 0 : Err(st, "flush");
}

int Filesystem::Fsync(uint64_t ino, uint64_t /*fh*/, bool /*datasync*/) {
  if (options_.read_only) return 0;
  if (auto data = DataOf(ino)) {
    Status st = data->Flush(true);
    if (!st.ok()) return Err(st, "fsync");
  } else {
    std::lock_guard<std::mutex> lock(meta_mu_);
    Status st = meta_->Sync();
    if (!st.ok()) return Err(st, "fsync");
  }
  Status st = store_->Flush();
  return st.ok() ? 0 : Err(st, "fsync");
}

int Filesystem::Release(uint64_t ino, uint64_t fh) {
  std::shared_ptr<FileData> data;
  {
    std::lock_guard<std::mutex> lock(table_mu_);
    auto h = handles_.find(fh);
    if (h == handles_.end()) return EBADF;
    const bool writer = IsWriting(h->second.flags);
    handles_.erase(h);
    auto it = nodes_.find(ino);
    if (it == nodes_.end()) return 0;
    if (writer && it->second.writers > 0) it->second.writers--;
    data = it->second.data;
  }
  int e = 0;
  bool orphan = false;
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    auto rec = meta_->GetInode(ino);
    orphan = rec.ok() && rec->nlink == 0;
  }
  if (data && !orphan && !options_.read_only) {
    Status st = data->Flush(false);
    if (!st.ok()) e = Err(st, "release");
  }
  {
    std::lock_guard<std::mutex> lock(table_mu_);
    auto it = nodes_.find(ino);
    if (it != nodes_.end() && --it->second.nopen == 0) {
      if (e == 0) it->second.data.reset();  // keep unflushed data for another try
      if (it->second.nlookup == 0 && !it->second.data) nodes_.erase(it);
    }
  }
  if (orphan) MaybeReap(ino);
  return e;
}

int Filesystem::Fallocate(uint64_t ino, uint64_t /*fh*/, int mode, uint64_t off, uint64_t len) {
  store_->NoteWriteActivity();
  if (mode != 0) return EOPNOTSUPP;
  if (options_.read_only) return EROFS;
  if (off + len > kMaxFileSize || off + len < off) return EFBIG;
  auto data = DataOf(ino);
  if (!data) return EBADF;
  if (off + len > data->size()) {
    Status st = data->Truncate(off + len);
    if (st.ok()) st = data->Commit();
    if (!st.ok()) return Err(st, "fallocate");
  }
  return 0;
}

int Filesystem::Lseek(uint64_t ino, uint64_t /*fh*/, uint64_t off, int whence, uint64_t* out) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return EINVAL;
  auto data = DataOf(ino);
  if (!data) return EBADF;
  auto r = data->Seek(off, whence == SEEK_DATA);
  if (!r) return ENXIO;
  *out = *r;
  return 0;
}

// ---------------------------------------------------------------- directories

int Filesystem::OpenDir(uint64_t ino) {
  std::lock_guard<std::mutex> lock(meta_mu_);
  auto rec = meta_->GetInode(ino);
  if (!rec.ok()) return Err(rec.status(), "opendir");
  return S_ISDIR(rec->mode) ? 0 : ENOTDIR;
}

int Filesystem::ReadDir(uint64_t ino, uint64_t off, bool plus, const DirFiller& fill) {
  struct Item {
    std::string name;
    Attr attr;
    uint64_t next;
  };
  std::vector<Item> items;
  {
    std::lock_guard<std::mutex> lock(meta_mu_);
    Attr self;
    if (int e = AttrLocked(ino, &self)) return e;
    if (!S_ISDIR(self.mode)) return ENOTDIR;
    if (off == 0) items.push_back({".", self, 1});
    if (off <= 1) {
      Attr up;
      auto p = meta_->ParentOf(ino);
      if (!p.ok() || AttrLocked(*p, &up) != 0) up = self;
      items.push_back({"..", up, 2});
    }
    const size_t limit = plus ? 128 : 512;
    Status st = meta_->ListDir(ino, off >= 2 ? off - 2 : 0, [&](const DirEntryRecord& e) {
      Item it;
      it.name = e.name;
      it.attr.ino = e.ino;
      it.attr.mode = e.mode;
      it.next = e.cookie + 2;
      items.push_back(std::move(it));
      return items.size() < limit;
    });
    if (!st.ok()) return Err(st, "readdir");
    if (plus) {
      for (auto& it : items) {
        if (it.name == "." || it.name == "..") continue;
        if (int e = AttrLocked(it.attr.ino, &it.attr)) return e;
      }
    }
  }
  for (auto& it : items) {
    const bool dots = it.name == "." || it.name == "..";
    if (plus && !dots) Overlay(&it.attr);
    if (!fill(it.name, it.attr, it.next)) break;
    if (plus && !dots) AddLookup(it.attr.ino);
  }
  return 0;
}

int Filesystem::FsyncDir(uint64_t /*ino*/) {
  if (options_.read_only) return 0;
  std::lock_guard<std::mutex> lock(meta_mu_);
  Status st = meta_->Sync();
  return st.ok() ? 0 : Err(st, "fsyncdir");
}

// ---------------------------------------------------------------- xattrs

int Filesystem::SetXattr(uint64_t ino, std::string_view name, std::string_view value, int flags) {
  store_->NoteWriteActivity();
  if (options_.read_only) return EROFS;
  if (name.empty()) return EINVAL;
  if (name.size() > kXattrNameMax) return ERANGE;
  if (value.size() > kXattrSizeMax) return E2BIG;
  if (!AllowedXattr(name)) return EOPNOTSUPP;
  std::lock_guard<std::mutex> lock(meta_mu_);
  auto rec = meta_->GetInode(ino);
  if (!rec.ok()) return Err(rec.status(), "setxattr");
  auto has = meta_->HasXattr(ino, name);
  if (!has.ok()) return Err(has.status(), "setxattr");
  if ((flags & XATTR_CREATE) && *has) return EEXIST;
  if ((flags & XATTR_REPLACE) && !*has) return ENODATA;
  InodeRecord r = *rec;
  r.ctime_ns = NowNs();
  if (name == kAclAccessXattr) {
    // Keep the mode bits in step with the ACL (the kernel leaves it to us).
    if (auto m = AclMode(value)) r.mode = (r.mode & ~0777u) | *m;
  }
  Status st = meta_->Begin();
  if (st.ok()) st = meta_->SetXattr(ino, name, value);
  if (st.ok()) st = meta_->UpdateInode(r);
  if (st.ok()) st = meta_->Commit();
  else meta_->Rollback();
  return st.ok() ? 0 : Err(st, "setxattr");
}

int Filesystem::GetXattr(uint64_t ino, std::string_view name, size_t size, std::string* out) {
  if (name.size() > kXattrNameMax) return ERANGE;
  std::lock_guard<std::mutex> lock(meta_mu_);
  auto v = meta_->GetXattr(ino, name);
  if (!v.ok()) {
    if (!v.status().Is(Code::kNotFound)) return Err(v.status(), "getxattr");
    auto rec = meta_->GetInode(ino);
    return rec.ok() ? ENODATA : Err(rec.status(), "getxattr");
  }
  if (size != 0 && v->size() > size) return ERANGE;
  *out = std::move(*v);
  return 0;
}

int Filesystem::ListXattr(uint64_t ino, size_t size, std::string* out) {
  std::lock_guard<std::mutex> lock(meta_mu_);
  auto names = meta_->ListXattrs(ino);
  if (!names.ok()) return Err(names.status(), "listxattr");
  out->clear();
  for (const auto& n : *names) {
    out->append(n);
    out->push_back('\0');
  }
  if (size != 0 && out->size() > size) return ERANGE;
  return 0;
}

int Filesystem::RemoveXattr(uint64_t ino, std::string_view name) {
  store_->NoteWriteActivity();
  if (options_.read_only) return EROFS;
  if (name.size() > kXattrNameMax) return ERANGE;
  std::lock_guard<std::mutex> lock(meta_mu_);
  auto rec = meta_->GetInode(ino);
  if (!rec.ok()) return Err(rec.status(), "removexattr");
  InodeRecord r = *rec;
  r.ctime_ns = NowNs();
  Status st = meta_->Begin();
  if (!st.ok()) return Err(st, "removexattr");
  st = meta_->RemoveXattr(ino, name);
  if (st.ok()) st = meta_->UpdateInode(r);
  if (st.ok()) st = meta_->Commit();
  else meta_->Rollback();
  if (st.Is(Code::kNotFound)) return ENODATA;
  return st.ok() ? 0 : Err(st, "removexattr");
}

// ---------------------------------------------------------------- volume

int Filesystem::StatFs(StatFsInfo* out) {
  std::optional<StatFsInfo> peers;
  if (options_.statfs) peers = options_.statfs();
  if (peers) {
    *out = *peers;
  } else {
    struct statvfs sv;
    auto dir = options_.metadata_path.parent_path();
    if (statvfs(dir.empty() ? "." : dir.c_str(), &sv) != 0) return errno;
    out->block_size = sv.f_frsize;
    out->total_bytes = static_cast<uint64_t>(sv.f_blocks) * sv.f_frsize;
    out->free_bytes = static_cast<uint64_t>(sv.f_bfree) * sv.f_frsize;
    out->avail_bytes = static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
  }
  std::lock_guard<std::mutex> lock(meta_mu_);
  auto totals = meta_->Totals();
  if (totals.ok()) {
    out->files = totals->first + (1ull << 32);
    out->files_free = 1ull << 32;
  }
  out->name_max = kNameMax;
  return 0;
}

Status Filesystem::FlushAll(bool durable) {
  std::vector<std::pair<uint64_t, std::shared_ptr<FileData>>> files;
  {
    std::lock_guard<std::mutex> lock(table_mu_);
    for (auto& [ino, node] : nodes_) {
      if (node.data) files.emplace_back(ino, node.data);
    }
  }
  Status first;
  for (auto& [ino, f] : files) {
    Status st = f->Flush(false);
    if (!st.ok() && first.ok()) first = st;
    if (!st.ok()) continue;
    // Stored: the data a failed close kept is not needed any more.
    std::lock_guard<std::mutex> lock(table_mu_);
    auto it = nodes_.find(ino);
    if (it != nodes_.end() && it->second.nopen == 0 && it->second.writers == 0 &&
        it->second.data == f) {
      it->second.data.reset();
      if (it->second.nlookup == 0) nodes_.erase(it);
    }
  }
  if (meta_) {  // null when Open failed
    std::lock_guard<std::mutex> lock(meta_mu_);
    Status st = meta_->CommitPending();
    if (!st.ok() && first.ok()) first = st;
  }
  if (durable) {
    Status st = store_->Flush();
    if (!st.ok() && first.ok()) first = st;
    std::lock_guard<std::mutex> lock(meta_mu_);
    st = meta_->Sync();
    if (!st.ok() && first.ok()) first = st;
  }
  return first;
}

Status Filesystem::SyncMetadata() {
  if (options_.read_only) return Status::OK();
  std::lock_guard<std::mutex> lock(meta_mu_);
  return meta_->Sync();
}

FsStats Filesystem::Stats() {
  FsStats s;
  s.dirty_bytes = static_cast<uint64_t>(std::max<int64_t>(0, dirty_total_.load()));
  {
    std::lock_guard<std::mutex> lock(table_mu_);
    s.open_files = handles_.size();
  }
  s.cache_bytes = cache_.bytes();
  s.cache_hits = cache_.hits();
  s.cache_misses = cache_.misses();
  s.pushed_bytes = pushed_bytes_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace meshfs::fs
