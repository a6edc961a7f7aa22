#define FUSE_USE_VERSION 312
#include "meshfs/fs/fuse_ops.h"

#include <fuse_lowlevel.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "meshfs/core/log.h"
#include "meshfs/core/thread_name.h"
#include "meshfs/fs/mount_table.h"

namespace meshfs::fs {
namespace {

constexpr char kLog[] = "fuse";

FuseServer* Server(fuse_req_t req) {
  // libfuse starts the workers; each names itself at its first request.
  static thread_local const bool named = (NameThisThread("fuse-worker"), true);
  (void)named;
  return static_cast<FuseServer*>(fuse_req_userdata(req));
}
Filesystem* Fs(fuse_req_t req) { return Server(req)->fs(); }

Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return Caller{ctx->uid, ctx->gid, ctx->umask};
}

void ToStat(const Attr& a, struct stat* st) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = a.ino;
  st->st_mode = a.mode;
  st->st_nlink = a.nlink;
  st->st_uid = a.uid;
  st->st_gid = a.gid;
  st->st_rdev = a.rdev;
  st->st_size = static_cast<off_t>(a.size);
  st->st_blocks = static_cast<blkcnt_t>(a.blocks);
  st->st_blksize = 65536;
  st->st_atim.tv_sec = a.atime_ns / 1'000'000'000;
  st->st_atim.tv_nsec = a.atime_ns % 1'000'000'000;
  st->st_mtim.tv_sec = a.mtime_ns / 1'000'000'000;
  st->st_mtim.tv_nsec = a.mtime_ns % 1'000'000'000;
  st->st_ctim.tv_sec = a.ctime_ns / 1'000'000'000;
  st->st_ctim.tv_nsec = a.ctime_ns % 1'000'000'000;
}

fuse_entry_param Entry(fuse_req_t req, const Attr& a) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.ino = a.ino;
  e.generation = a.gen;
  ToStat(a, &e.attr);
  e.attr_timeout = Server(req)->settings().attr_timeout_s;
  e.entry_timeout = Server(req)->settings().entry_timeout_s;
  return e;
}

int64_t ToNs(const timespec& t) { return t.tv_sec * 1'000'000'000LL + t.tv_nsec; }

// Runs `body`; an exception becomes an EIO reply (the body has not replied).
template <typename F>
void Guard(fuse_req_t req, const char* what, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    LogError(kLog, std::string(what) + ": " + e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    LogError(kLog, std::string(what) + ": unknown exception");
    fuse_reply_err(req, EIO);
  }
}

void ReplyEntry(fuse_req_t req, int e, const Attr& a) {
  if (e != 0) {
    fuse_reply_err(req, e);
    return;
  }
  fuse_entry_param ep = Entry(req, a);
  if (fuse_reply_entry(req, &ep) != 0) Fs(req)->Forget(a.ino, 1);  // the kernel did not take it
}

void OpInit(void* userdata, fuse_conn_info* conn) {
  auto* server = static_cast<FuseServer*>(userdata);
  const FuseSettings& s = server->settings();
  if (s.writeback_cache && !s.read_only && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  }
  if (conn->capable & FUSE_CAP_POSIX_ACL) conn->want |= FUSE_CAP_POSIX_ACL;
  // The umask is ours to apply: a parent's default ACL replaces it
  // (Filesystem::NewNodeLocked).
  if (conn->capable & FUSE_CAP_DONT_MASK) conn->want |= FUSE_CAP_DONT_MASK;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  conn->want &= ~static_cast<unsigned>(FUSE_CAP_READDIRPLUS_AUTO);
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  // Symlink targets never change (a new target is a new inode): the kernel
  // may keep them in its page cache instead of asking again.
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  conn->want &= ~static_cast<unsigned>(FUSE_CAP_ATOMIC_O_TRUNC);
  // Directory handles carry nothing here (readdir works from the inode and
  // the offset): let the kernel open and release directories without asking,
  // two requests fewer per directory that find, ls -R or rm -r walk.
  server->set_kernel_opens_dirs((conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0);
  conn->max_write = s.max_write;
  conn->max_readahead = s.max_write;
  conn->time_gran = 1;
}

void OpDestroy(void* userdata) {
  auto* server = static_cast<FuseServer*>(userdata);
  try {
    if (server->settings().on_destroy) server->settings().on_destroy();
  } catch (...) {
  }
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, "lookup", [&] {
    Attr a;
    int e = Fs(req)->Lookup(parent, name, &a);
    if (e == ENOENT) {
      // A negative entry the kernel may cache (ino 0).
      fuse_entry_param ep;
      std::memset(&ep, 0, sizeof(ep));
      ep.entry_timeout = Server(req)->settings().entry_timeout_s;
      fuse_reply_entry(req, &ep);
      return;
    }
    ReplyEntry(req, e, a);
  });
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Fs(req)->Forget(ino, nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) Fs(req)->Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Guard(req, "getattr", [&] {
    Attr a;
    int e = Fs(req)->GetAttr(ino, &a);
    if (e != 0) {
      fuse_reply_err(req, e);
      return;
    }
    struct stat st;
    ToStat(a, &st);
    fuse_reply_attr(req, &st, Server(req)->settings().attr_timeout_s);
  });
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
               fuse_file_info* fi) {
  Guard(req, "setattr", [&] {
    SetAttrRequest r;
    if (to_set & FUSE_SET_ATTR_MODE) r.mode = attr->st_mode;
    if (to_set & FUSE_SET_ATTR_UID) r.uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) r.gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_SIZE) r.size = static_cast<uint64_t>(attr->st_size);
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) r.atime_ns = SetAttrRequest::kTimeNow;
    else if (to_set & FUSE_SET_ATTR_ATIME) r.atime_ns = ToNs(attr->st_atim);
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) r.mtime_ns = SetAttrRequest::kTimeNow;
    else if (to_set & FUSE_SET_ATTR_MTIME) r.mtime_ns = ToNs(attr->st_mtim);
    if (to_set & FUSE_SET_ATTR_CTIME) r.ctime_ns = ToNs(attr->st_ctim);
    if (fi) r.fh = fi->fh;
    Attr a;
    int e = Fs(req)->SetAttr(CallerOf(req), ino, r, &a);
    if (e != 0) {
      fuse_reply_err(req, e);
      return;
    }
    struct stat st;
    ToStat(a, &st);
    fuse_reply_attr(req, &st, Server(req)->settings().attr_timeout_s);
  });
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  Guard(req, "readlink", [&] {
    std::string target;
    int e = Fs(req)->Readlink(ino, &target);
    if (e != 0) fuse_reply_err(req, e);
    else fuse_reply_readlink(req, target.c_str());
  });
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  Guard(req, "mknod", [&] {
    Attr a;
    int e = Fs(req)->Mknod(CallerOf(req), parent, name, mode, rdev, &a);
    ReplyEntry(req, e, a);
  });
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Guard(req, "mkdir", [&] {
    Attr a;
    int e = Fs(req)->Mkdir(CallerOf(req), parent, name, mode, &a);
    ReplyEntry(req, e, a);
  });
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, "unlink", [&] { fuse_reply_err(req, Fs(req)->Unlink(parent, name)); });
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, "rmdir", [&] { fuse_reply_err(req, Fs(req)->Rmdir(parent, name)); });
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  Guard(req, "symlink", [&] {
    Attr a;
    int e = Fs(req)->Symlink(CallerOf(req), parent, name, link, &a);
    ReplyEntry(req, e, a);
  });
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  Guard(req, "rename", [&] {
    fuse_reply_err(req, Fs(req)->Rename(parent, name, newparent, newname, flags));
  });
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  Guard(req, "link", [&] {
    Attr a;
    int e = Fs(req)->Link(ino, newparent, newname, &a);
    ReplyEntry(req, e, a);
  });
}

int OpenFlags(fuse_req_t req, int flags) {
  // With the writeback cache the kernel keeps the file size and applies
  // O_APPEND itself; the offsets it sends are final.
  if (Server(req)->settings().writeback_cache) flags &= ~O_APPEND;
  return flags;
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Server(req)->SetReadahead();
  Guard(req, "open", [&] {
    uint64_t fh = 0;
    int e = Fs(req)->Open(CallerOf(req), ino, OpenFlags(req, fi->flags), &fh);
    if (e != 0) {
      fuse_reply_err(req, e);
      return;
    }
    fi->fh = fh;
    fi->keep_cache = 1;  // this mount is the only writer: the page cache stays valid
    // The close of a read-only handle has nothing to write back: the kernel
    // skips its flush request (one round trip fewer per file read, and per
    // rsync'd file: rsync opens each one again to fchmod it). Ignored by the
    // kernel with the write-back cache, where a flush writes cached pages.
    if ((fi->flags & O_ACCMODE) == O_RDONLY) fi->noflush = 1;
    if (fuse_reply_open(req, fi) != 0) (void)Fs(req)->Release(ino, fh);
  });
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  Server(req)->SetReadahead();
  Guard(req, "create", [&] {
    Attr a;
    uint64_t fh = 0;
    int e = Fs(req)->Create(CallerOf(req), parent, name, mode, OpenFlags(req, fi->flags), &a, &fh);
    if (e != 0) {
      fuse_reply_err(req, e);
      return;
    }
    fi->fh = fh;
    fi->keep_cache = 1;
    fuse_entry_param ep = Entry(req, a);
    if (fuse_reply_create(req, &ep, fi) != 0) {
      (void)Fs(req)->Release(a.ino, fh);
      Fs(req)->Forget(a.ino, 1);
    }
  });
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  Guard(req, "read", [&] {
    ReadBuffer out;  // usually a view into the cached slice: no copy
    std::vector<PagePush> push;
    FuseServer* server = Server(req);
    int e = Fs(req)->Read(ino, fi->fh, static_cast<uint64_t>(off), size, &out,
                          server->settings().push_pages ? &push : nullptr);
    if (e != 0) {
      fuse_reply_err(req, e);
      return;
    }
    fuse_reply_buf(req, out.view.data(), out.view.size());
    for (PagePush& p : push) server->QueuePush(ino, std::move(p));
  });
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
             fuse_file_info* fi) {
  Guard(req, "write", [&] {
    size_t written = 0;
    int e = Fs(req)->Write(CallerOf(req), ino, fi->fh, static_cast<uint64_t>(off),
                           std::string_view(buf, size), &written);
    if (e != 0) fuse_reply_err(req, e);
    else fuse_reply_write(req, written);
  });
}

void OpFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, "flush", [&] { fuse_reply_err(req, Fs(req)->Flush(ino, fi->fh)); });
}

void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, "release", [&] { fuse_reply_err(req, Fs(req)->Release(ino, fi->fh)); });
}

void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  Guard(req, "fsync", [&] { fuse_reply_err(req, Fs(req)->Fsync(ino, fi->fh, datasync != 0)); });
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (Server(req)->kernel_opens_dirs()) {
    fuse_reply_err(req, ENOSYS);  // "success, and do not ask again"
    return;
  }
  Guard(req, "opendir", [&] {
    int e = Fs(req)->OpenDir(ino);
    if (e != 0) {
      fuse_reply_err(req, e);
      return;
    }
    fi->fh = 0;
    fi->cache_readdir = 0;
    fuse_reply_open(req, fi);
  });
}

void DoReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  std::string buf(size, '\0');
  size_t used = 0;
  std::vector<uint64_t> taken;  // lookups raised, for rollback if the reply fails
  int e = Fs(req)->ReadDir(ino, static_cast<uint64_t>(off), plus,
                           [&](std::string_view name, const Attr& a, uint64_t next) {
    std::string n(name);
    size_t need;
    if (plus) {
      fuse_entry_param ep = Entry(req, a);
      const bool dots = name == "." || name == "..";
      if (dots) {
        std::memset(&ep, 0, sizeof(ep));
        ep.attr.st_ino = a.ino;
        ep.attr.st_mode = a.mode;
      }
      need = fuse_add_direntry_plus(req, buf.data() + used, size - used, n.c_str(), &ep,
                                    static_cast<off_t>(next));
      if (need > size - used) return false;
      if (!dots) taken.push_back(a.ino);
    } else {
      struct stat st;
      std::memset(&st, 0, sizeof(st));
      st.st_ino = a.ino;
      st.st_mode = a.mode;
      need = fuse_add_direntry(req, buf.data() + used, size - used, n.c_str(), &st,
                               static_cast<off_t>(next));
      if (need > size - used) return false;
    }
    used += need;
    return true;
  });
  if (e != 0) {
    fuse_reply_err(req, e);
    return;
  }
  if (fuse_reply_buf(req, buf.data(), used) != 0) {
    for (uint64_t i : taken) Fs(req)->Forget(i, 1);
  }
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guard(req, "readdir", [&] { DoReaddir(req, ino, size, off, false); });
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guard(req, "readdirplus", [&] { DoReaddir(req, ino, size, off, true); });
}

void OpReleasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  Guard(req, "fsyncdir", [&] { fuse_reply_err(req, Fs(req)->FsyncDir(ino)); });
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  Guard(req, "statfs", [&] {
    StatFsInfo s;
    int e = Fs(req)->StatFs(&s);
    if (e != 0) {
      fuse_reply_err(req, e);
      return;
    }
    struct statvfs sv;
    std::memset(&sv, 0, sizeof(sv));
    const uint64_t bs = s.block_size ? s.block_size : 4096;
    sv.f_bsize = bs;
    sv.f_frsize = bs;
    sv.f_blocks = s.total_bytes / bs;
    sv.f_bfree = s.free_bytes / bs;
    sv.f_bavail = s.avail_bytes / bs;
    sv.f_files = s.files;
    sv.f_ffree = s.files_free;
    sv.f_favail = s.files_free;
    sv.f_namemax = s.name_max;
    fuse_reply_statfs(req, &sv);
  });
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  Guard(req, "setxattr", [&] {
    fuse_reply_err(req, Fs(req)->SetXattr(ino, name, std::string_view(value, size), flags));
  });
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Guard(req, "getxattr", [&] {
    std::string v;
    int e = Fs(req)->GetXattr(ino, name, size, &v);
    if (e != 0) fuse_reply_err(req, e);
    else if (size == 0) fuse_reply_xattr(req, v.size());
    else fuse_reply_buf(req, v.data(), v.size());
  });
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Guard(req, "listxattr", [&] {
    std::string v;
    int e = Fs(req)->ListXattr(ino, size, &v);
    if (e != 0) fuse_reply_err(req, e);
    else if (size == 0) fuse_reply_xattr(req, v.size());
    else fuse_reply_buf(req, v.data(), v.size());
  });
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Guard(req, "removexattr", [&] { fuse_reply_err(req, Fs(req)->RemoveXattr(ino, name)); });
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info* fi) {
  Guard(req, "fallocate", [&] {
    if (offset < 0 || length <= 0) {
      fuse_reply_err(req, EINVAL);
      return;
    }
    fuse_reply_err(req, Fs(req)->Fallocate(ino, fi->fh, mode, static_cast<uint64_t>(offset),
                                           static_cast<uint64_t>(length)));
  });
}

void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  Guard(req, "lseek", [&] {
    uint64_t out = 0;
    int e = Fs(req)->Lseek(ino, fi->fh, static_cast<uint64_t>(off), whence, &out);
    if (e != 0) fuse_reply_err(req, e);
    else fuse_reply_lseek(req, static_cast<off_t>(out));
  });
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof(ops));
  ops.init = OpInit;
  ops.destroy = OpDestroy;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readlink = OpReadlink;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.symlink = OpSymlink;
  ops.rename = OpRename;
  ops.link = OpLink;
  ops.open = OpOpen;
  ops.create = OpCreate;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.fsyncdir = OpFsyncdir;
  ops.statfs = OpStatfs;
  ops.setxattr = OpSetxattr;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.removexattr = OpRemovexattr;
  ops.fallocate = OpFallocate;
  ops.lseek = OpLseek;
  return ops;
}

void NoopHandler(int) {}

}  // namespace

Result<std::unique_ptr<FuseServer>> FuseServer::Create(Filesystem* fs, FuseSettings settings,
                                                       const std::vector<std::string>& options) {
  std::unique_ptr<FuseServer> server(new FuseServer(fs, std::move(settings)));
  std::vector<std::string> argv_s{"meshfs"};
  std::string joined;
  for (const auto& o : options) joined += (joined.empty() ? "" : ",") + o;
  if (!joined.empty()) {
    argv_s.push_back("-o");
    argv_s.push_back(joined);
  }
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  static const fuse_lowlevel_ops kOps = MakeOps();
  server->se_ = fuse_session_new(&args, &kOps, sizeof(kOps), server.get());
  fuse_opt_free_args(&args);
  if (server->se_ == nullptr) {
    return Status::InvalidArgument("FUSE rejected the mount options (" + joined + ")");
  }
  return server;
}

FuseServer::~FuseServer() {
  if (se_ != nullptr) {
    Unmount();
    fuse_session_destroy(se_);
  }
}

Status FuseServer::Mount(const std::string& mountpoint) {
  if (fuse_session_mount(se_, mountpoint.c_str()) != 0) {
    return Status::IOError("cannot mount on " + mountpoint +
                           " (is it an existing directory you own, and is /dev/fuse usable?)");
  }
  mounted_ = true;
  // Never stat() the mountpoint here: that would be a request to ourselves
  // before the loop serves any.
  char* real = ::realpath(mountpoint.c_str(), nullptr);
  mountpoint_ = real ? real : mountpoint;
  std::free(real);
  return Status::OK();
}

namespace {
// "MAJ:MIN" of the last mount on `mountpoint`, or "" if none.
std::string MountDevice(const std::string& mountpoint) {
  std::string found;
  for (const MountEntry& e : ReadMountTable()) {
    if (e.mountpoint == mountpoint) found = e.device;
  }
  return found;
}
}  // namespace
void FuseServer::SetReadahead() {
  // The kernel sets the mount's read-ahead to min(its default 128 KiB,
  // max_readahead) when it takes the INIT reply; only the bdi's sysfs knob
  // raises it, and only after INIT (so: at the first open). Needs root;
  // without it reads keep the kernel's default.
  std::call_once(readahead_once_, [this] {
    if (settings_.readahead_kb == 0 || mountpoint_.empty()) return;
    const std::string dev = MountDevice(mountpoint_);
    if (dev.empty() || dev.find_first_not_of("0123456789:") != std::string::npos) return;
    const std::string path = "/sys/class/bdi/" + dev + "/read_ahead_kb";
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      LogDebug(kLog, "read-ahead left at the kernel's default: " + path + ": " +
                         std::strerror(errno));
      return;
    }
    const std::string v = std::to_string(settings_.readahead_kb) + "\n";
    if (::write(fd, v.data(), v.size()) != static_cast<ssize_t>(v.size())) {
      LogDebug(kLog, "read-ahead left at the kernel's default: " + std::string(std::strerror(errno)));
    }
    ::close(fd);
  });
}

Status FuseServer::Loop() {
  // Exit() wakes the loop's main thread with SIGUSR2; the handler does nothing.
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = NoopHandler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR2, &sa, nullptr);
  loop_thread_ = pthread_self();
  in_loop_.store(true);
  push_stop_ = false;
  pusher_ = std::thread([this] { PusherLoop(); });
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, settings_.max_threads);
  // Idle workers stay: bursts of parallel requests (write-back, read-ahead)
  // would otherwise create and end threads all the time.
  fuse_loop_cfg_set_idle_threads(cfg, settings_.max_threads);
  int rc = fuse_session_loop_mt(se_, cfg);
  fuse_loop_cfg_destroy(cfg);
  in_loop_.store(false);
  {
    std::lock_guard<std::mutex> lock(push_mu_);
    push_stop_ = true;  // what is still queued is dropped (only a cache)
    push_queue_.clear();
    push_queued_bytes_ = 0;
  }
  push_cv_.notify_all();
  pusher_.join();
  if (rc != 0 && rc != -ENODEV && !fuse_session_exited(se_)) {
    return Status::IOError("FUSE session failed: " + std::string(std::strerror(rc < 0 ? -rc : rc)));
  }
  return Status::OK();
}

void FuseServer::QueuePush(uint64_t ino, PagePush p) {
  constexpr uint64_t kMaxQueued = 32ull << 20;
  {
    std::lock_guard<std::mutex> lock(push_mu_);
    if (push_stop_ || push_queued_bytes_ + p.data.size() > kMaxQueued) return;
    push_queued_bytes_ += p.data.size();
    push_queue_.emplace_back(ino, std::move(p));
  }
  push_cv_.notify_one();
}

void FuseServer::PusherLoop() {
  NameThisThread("page-pusher");
  std::unique_lock<std::mutex> lock(push_mu_);
  for (;;) {
    push_cv_.wait(lock, [&] { return push_stop_ || !push_queue_.empty(); });
    if (push_stop_) return;
    auto [ino, p] = std::move(push_queue_.front());
    push_queue_.pop_front();
    push_queued_bytes_ -= p.data.size();
    lock.unlock();
    StorePages(ino, p);
    lock.lock();
  }
}

void FuseServer::StorePages(uint64_t ino, const PagePush& p) {
  fs_->PushPages(ino, p, [&] {
    fuse_bufvec buf = FUSE_BUFVEC_INIT(p.data.size());
    buf.buf[0].mem = const_cast<char*>(p.data.data());
    const int rc = fuse_lowlevel_notify_store(se_, ino, static_cast<off_t>(p.off), &buf,
                                              static_cast<fuse_buf_copy_flags>(0));
    if (rc != 0 && rc != -ENOENT) {
      LogDebug(kLog, "page cache store refused: " + std::string(std::strerror(-rc)));
    }
  });
}

void FuseServer::Exit() {
  if (se_ == nullptr) return;
  fuse_session_exit(se_);
  if (in_loop_.load()) pthread_kill(loop_thread_, SIGUSR2);
}

void FuseServer::Unmount() {
  if (mounted_) {
    fuse_session_unmount(se_);
    mounted_ = false;
  }
}

}  // namespace meshfs::fs
