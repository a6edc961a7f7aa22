// The POSIX layer without the kernel: a real SQLite metadata file, a real
// codec and an in-memory (or fault-injecting) store. Every rule is checked
// with the exact errno a program expects; remounts reopen the metadata.
#include "meshfs/fs/filesystem.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "testing/memory_store.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

namespace meshfs::fs {
namespace {

constexpr uint32_t kSlice = 64 * 1024;
const Caller kRoot{0, 0};
const Caller kUser{1000, 1000};

SliceKeys TestKeys() {
  SliceKeys k;
  for (size_t i = 0; i < 32; ++i) {
    k.content_key[i] = static_cast<uint8_t>(i);
    k.prf_key[i] = static_cast<uint8_t>(100 + i);
  }
  return k;
}

std::string Pattern(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class FilesystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/meshfs-fs-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    codec_ = std::make_unique<SliceCodec>(TestKeys(), kSlice);
    faulty_ = std::make_unique<testing::FaultyStore>(&store_);
    Mount();
  }
  void TearDown() override {
    fs_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Mount() {
    Filesystem::Options o;
    o.metadata_path = dir_ / "metadata.db";
    o.slice_size = kSlice;
    o.volume_id = "test-volume";
    o.codec = codec_.get();
    o.store = faulty_.get();
    o.cache_bytes = cache_bytes_;
    o.dirty_max = 4 * kSlice;
    o.clock = &clock_;
    auto fs = Filesystem::Open(o);
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    fs_ = std::move(*fs);
  }
  void Remount() {
    fs_.reset();
    Mount();
  }

  // Creates a file with `content`, closes it; returns its inode number.
  uint64_t MakeFile(uint64_t parent, const std::string& name, const std::string& content,
                    const Caller& c = kRoot, uint32_t mode = 0644) {
    Attr a;
    uint64_t fh = 0;
    EXPECT_EQ(fs_->Create(c, parent, name, mode, O_WRONLY | O_CREAT | O_EXCL, &a, &fh), 0);
    size_t n = 0;
    if (!content.empty()) {
      EXPECT_EQ(fs_->Write(c, a.ino, fh, 0, content, &n), 0);
    }
    EXPECT_EQ(fs_->Flush(a.ino, fh), 0);
    EXPECT_EQ(fs_->Release(a.ino, fh), 0);
    return a.ino;
  }
  // Creates `name` in the root and writes `content` while the store fails:
  // the close reports EIO and the file keeps its data buffered. The store
  // works again on return.
  uint64_t MakeFileWithFailedClose(const std::string& name, const std::string& content) {
    Attr a;
    uint64_t fh = 0;
    size_t n = 0;
    EXPECT_EQ(fs_->Create(kRoot, kRootIno, name, 0644, O_WRONLY | O_CREAT, &a, &fh), 0);
    faulty_->FailWith(Code::kUnavailable);
    EXPECT_EQ(fs_->Write(kRoot, a.ino, fh, 0, content, &n), 0);
    EXPECT_EQ(fs_->Release(a.ino, fh), EIO);
    faulty_->FailWith(Code::kOk);
    return a.ino;
  }
  uint64_t MakeDir(uint64_t parent, const std::string& name, uint32_t mode = 0755,
                   const Caller& c = kRoot) {
    Attr a;
    EXPECT_EQ(fs_->Mkdir(c, parent, name, mode, &a), 0);
    return a.ino;
  }
  std::string ReadAll(uint64_t ino) {
    uint64_t fh = 0;
    EXPECT_EQ(fs_->Open(kRoot, ino, O_RDONLY, &fh), 0);
    Attr a;
    EXPECT_EQ(fs_->GetAttr(ino, &a), 0);
    std::string out;
    int e = fs_->Read(ino, fh, 0, a.size, &out);
    EXPECT_EQ(e, 0);
    EXPECT_EQ(fs_->Release(ino, fh), 0);
    return out;
  }
  uint64_t Ino(uint64_t parent, const std::string& name) {
    Attr a;
    if (fs_->Lookup(parent, name, &a) != 0) return 0;
    return a.ino;
  }
  Attr Get(uint64_t ino) {
    Attr a;
    EXPECT_EQ(fs_->GetAttr(ino, &a), 0);
    return a;
  }
  std::vector<std::string> List(uint64_t dir) {
    std::vector<std::string> names;
    EXPECT_EQ(fs_->ReadDir(dir, 0, false, [&](std::string_view n, const Attr&, uint64_t) {
      names.emplace_back(n);
      return true;
    }), 0);
    return names;
  }

  // The metadata as a kill -9 of the daemon would leave it now: the database
  // and its WAL copied from disk and opened by a new store.
  std::unique_ptr<MetadataStore> OnDisk() {
    auto copy = dir_ / ("crash" + std::to_string(++crashes_));
    std::filesystem::create_directories(copy);
    for (const char* suffix : {"metadata.db", "metadata.db-wal"}) {
      if (std::filesystem::exists(dir_ / suffix)) {
        std::filesystem::copy_file(dir_ / suffix, copy / suffix);
      }
    }
    MetadataStore::Options o;
    o.path = copy / "metadata.db";
    o.slice_size = kSlice;
    o.volume_id = "test-volume";
    auto m = MetadataStore::Open(o);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? std::move(*m) : nullptr;
  }

  int crashes_ = 0;
  std::filesystem::path dir_;
  FakeClock clock_;
  testing::MemoryStore store_;
  std::unique_ptr<testing::FaultyStore> faulty_;
  std::unique_ptr<SliceCodec> codec_;
  std::unique_ptr<Filesystem> fs_;
  uint64_t cache_bytes_ = 16 << 20;
};

TEST_F(FilesystemTest, SmallFileIsInlineAndSurvivesRemount) {
  uint64_t ino = MakeFile(kRootIno, "hello.txt", "hello, world\n");
  EXPECT_EQ(store_.size(), 0u) << "a small file must not make a slice";
  EXPECT_EQ(ReadAll(ino), "hello, world\n");
  Attr a = Get(ino);
  EXPECT_EQ(a.size, 13u);
  EXPECT_EQ(a.nlink, 1u);
  EXPECT_TRUE(S_ISREG(a.mode));
  EXPECT_EQ(a.mode & 07777, 0644u);
  EXPECT_EQ(a.blocks, 1u);
  Remount();
  EXPECT_EQ(Ino(kRootIno, "hello.txt"), ino) << "inode numbers are stable across remounts";
  EXPECT_EQ(ReadAll(ino), "hello, world\n");
}

TEST_F(FilesystemTest, LargeFileIsSlicedAndSurvivesRemount) {
  const std::string content = Pattern(3 * kSlice + 1234, 7);
  uint64_t ino = MakeFile(kRootIno, "big", content);
  EXPECT_EQ(store_.size(), 4u);
  EXPECT_TRUE(ReadAll(ino) == content);
  EXPECT_EQ(Get(ino).blocks, (content.size() + 511) / 512);
  Remount();
  EXPECT_TRUE(ReadAll(ino) == content);
}

TEST_F(FilesystemTest, GrowingPastInlineLimitMovesToSlices) {
  uint64_t ino = MakeFile(kRootIno, "f", "abc");
  uint64_t fh;
  ASSERT_EQ(fs_->Open(kRoot, ino, O_WRONLY, &fh), 0);
  size_t n;
  std::string tail = Pattern(10000, 3);
  ASSERT_EQ(fs_->Write(kRoot, ino, fh, 3, tail, &n), 0);
  ASSERT_EQ(fs_->Release(ino, fh), 0);
  EXPECT_EQ(store_.size(), 1u);
  Remount();
  EXPECT_TRUE(ReadAll(ino) == "abc" + tail);
  // Shrinking back below the limit makes it inline again.
  Attr a;
  SetAttrRequest req;
  req.size = 2;
  ASSERT_EQ(fs_->SetAttr(kRoot, ino, req, &a), 0);
  EXPECT_EQ(a.size, 2u);
  Remount();
  EXPECT_EQ(ReadAll(ino), "ab");
}

// A created file goes to disk in one commit with its contents at close
// (flush), and close leaves nothing uncommitted.
TEST_F(FilesystemTest, CreateIsCommittedByCloseWithItsContents) {
  Attr a;
  uint64_t fh = 0;
  ASSERT_EQ(fs_->Create(kUser, kRootIno, "small", 0640, O_WRONLY | O_CREAT | O_EXCL, &a, &fh), 0);
  EXPECT_TRUE(S_ISREG(a.mode));
  EXPECT_EQ(a.mode & 07777, 0640u);
  EXPECT_EQ(a.uid, kUser.uid);
  EXPECT_EQ(a.size, 0u);
  EXPECT_EQ(a.nlink, 1u);
  EXPECT_EQ(Ino(kRootIno, "small"), a.ino);  // visible at once
  {
    auto disk = OnDisk();
    ASSERT_NE(disk, nullptr);
    EXPECT_TRUE(disk->Lookup(kRootIno, "small").status().Is(Code::kNotFound));
  }
  size_t n = 0;
  ASSERT_EQ(fs_->Write(kUser, a.ino, fh, 0, "hello", &n), 0);
  ASSERT_EQ(fs_->Flush(a.ino, fh), 0);
  {
    auto disk = OnDisk();
    ASSERT_NE(disk, nullptr);
    auto ino = disk->Lookup(kRootIno, "small");
    ASSERT_TRUE(ino.ok());
    EXPECT_EQ(*ino, a.ino);
    auto rec = disk->GetInode(a.ino);
    ASSERT_TRUE(rec.ok());
    EXPECT_EQ(rec->size, 5u);
    auto inl = disk->GetInline(a.ino);
    ASSERT_TRUE(inl.ok() && inl->has_value());
    EXPECT_EQ(**inl, "hello");
  }
  ASSERT_EQ(fs_->Release(a.ino, fh), 0);
  // An empty file closed without a write is committed too.
  ASSERT_EQ(fs_->Create(kUser, kRootIno, "empty", 0644, O_WRONLY | O_CREAT, &a, &fh), 0);
  ASSERT_EQ(fs_->Flush(a.ino, fh), 0);
  auto disk = OnDisk();
  ASSERT_NE(disk, nullptr);
  EXPECT_TRUE(disk->Lookup(kRootIno, "empty").ok());
  ASSERT_EQ(fs_->Release(a.ino, fh), 0);
  Remount();
  EXPECT_EQ(ReadAll(Ino(kRootIno, "small")), "hello");
  EXPECT_EQ(Get(Ino(kRootIno, "empty")).size, 0u);
}

// Any other change commits a create still open, and a change that fails
// undoes only itself.
TEST_F(FilesystemTest, DeferredCreateIsCommittedByTheNextChange) {
  Attr a, d;
  uint64_t fh = 0;
  ASSERT_EQ(fs_->Create(kRoot, kRootIno, "open", 0644, O_RDWR | O_CREAT, &a, &fh), 0);
  EXPECT_EQ(fs_->Mkdir(kRoot, kRootIno, "open", 0755, &d), EEXIST);  // fails alone
  EXPECT_EQ(Ino(kRootIno, "open"), a.ino);
  ASSERT_EQ(fs_->Mkdir(kRoot, kRootIno, "dir", 0755, &d), 0);
  auto disk = OnDisk();
  ASSERT_NE(disk, nullptr);
  EXPECT_TRUE(disk->Lookup(kRootIno, "open").ok());
  EXPECT_TRUE(disk->Lookup(kRootIno, "dir").ok());
  ASSERT_EQ(fs_->Release(a.ino, fh), 0);
  // fsync of a file syncs the metadata with the deferred create.
  ASSERT_EQ(fs_->Create(kRoot, d.ino, "synced", 0644, O_RDWR | O_CREAT, &a, &fh), 0);
  ASSERT_EQ(fs_->Fsync(a.ino, fh, false), 0);
  disk = OnDisk();
  ASSERT_NE(disk, nullptr);
  EXPECT_TRUE(disk->Lookup(d.ino, "synced").ok());
  ASSERT_EQ(fs_->Release(a.ino, fh), 0);
}

// The kernel's write-back cache sends the times of cached writes as a
// setattr of mtime/ctime before it flushes: on an open file they are
// reported at once and committed by the flush, with the data.
TEST_F(FilesystemTest, WriteTimesOfAnOpenFileAreCommittedByItsFlush) {
  uint64_t ino = MakeFile(kRootIno, "f", "old");
  const int64_t old_mtime = Get(ino).mtime_ns;
  uint64_t fh = 0;
  ASSERT_EQ(fs_->Open(kRoot, ino, O_WRONLY, &fh), 0);
  size_t n = 0;
  ASSERT_EQ(fs_->Write(kRoot, ino, fh, 0, "new", &n), 0);
  SetAttrRequest times;
  times.mtime_ns = 1'800'000'000'000'000'000;
  times.ctime_ns = 1'800'000'000'000'000'001;
  times.fh = fh;
  Attr a;
  ASSERT_EQ(fs_->SetAttr(kRoot, ino, times, &a), 0);
  EXPECT_EQ(a.mtime_ns, *times.mtime_ns);
  EXPECT_EQ(a.ctime_ns, *times.ctime_ns);
  EXPECT_EQ(Get(ino).mtime_ns, *times.mtime_ns);
  {
    auto disk = OnDisk();
    ASSERT_NE(disk, nullptr);
    EXPECT_EQ(disk->GetInode(ino)->mtime_ns, old_mtime);
  }
  ASSERT_EQ(fs_->Flush(ino, fh), 0);
  {
    auto disk = OnDisk();
    ASSERT_NE(disk, nullptr);
    auto rec = disk->GetInode(ino);
    ASSERT_TRUE(rec.ok());
    EXPECT_EQ(rec->mtime_ns, *times.mtime_ns);
    EXPECT_EQ(rec->ctime_ns, *times.ctime_ns);
    EXPECT_EQ(**disk->GetInline(ino), "new");
  }
  // Times set while nothing else is dirty are committed by the release.
  times.mtime_ns = 1'900'000'000'000'000'000;
  ASSERT_EQ(fs_->SetAttr(kRoot, ino, times, &a), 0);
  ASSERT_EQ(fs_->Release(ino, fh), 0);
  EXPECT_EQ(Get(ino).mtime_ns, *times.mtime_ns);
  EXPECT_EQ(OnDisk()->GetInode(ino)->mtime_ns, *times.mtime_ns);
  // A later write sets mtime to its own time again.
  ASSERT_EQ(fs_->Open(kRoot, ino, O_WRONLY, &fh), 0);
  clock_.Advance(1000);
  ASSERT_EQ(fs_->Write(kRoot, ino, fh, 0, "x", &n), 0);
  EXPECT_EQ(Get(ino).mtime_ns, clock_.NowMicros() * 1000);
  ASSERT_EQ(fs_->Release(ino, fh), 0);
  // With atime (utimensat), or on a file not open, the change commits at once.
  SetAttrRequest utimes;
  utimes.atime_ns = utimes.mtime_ns = 1'600'000'000'000'000'000;
  ASSERT_EQ(fs_->Open(kRoot, ino, O_WRONLY, &fh), 0);
  ASSERT_EQ(fs_->SetAttr(kRoot, ino, utimes, &a), 0);
  EXPECT_EQ(OnDisk()->GetInode(ino)->mtime_ns, *utimes.mtime_ns);
  ASSERT_EQ(fs_->Release(ino, fh), 0);
  SetAttrRequest mtime_only;
  mtime_only.mtime_ns = 1'500'000'000'000'000'000;
  ASSERT_EQ(fs_->SetAttr(kRoot, ino, mtime_only, &a), 0);
  EXPECT_EQ(OnDisk()->GetInode(ino)->mtime_ns, *mtime_only.mtime_ns);
  Remount();
  EXPECT_EQ(Get(ino).mtime_ns, *mtime_only.mtime_ns);
}

// rsync's fchmod of the temporary file it just created joins the create's
// deferred commit; the kernel's ctime refresh after a rename (mtime as
// stored) is committed with the next change. Both are visible at once.
TEST_F(FilesystemTest, SetattrOfAnUncommittedFileAndCtimeRefreshAreDeferred) {
  Attr a, d;
  uint64_t fh = 0;
  ASSERT_EQ(fs_->Create(kRoot, kRootIno, ".tmp", 0600, O_RDWR | O_CREAT | O_EXCL, &a, &fh), 0);
  SetAttrRequest chmod;
  chmod.mode = 0604;
  ASSERT_EQ(fs_->SetAttr(kRoot, a.ino, chmod, &a), 0);
  EXPECT_EQ(a.mode & 07777, 0604u);
  EXPECT_TRUE(OnDisk()->Lookup(kRootIno, ".tmp").status().Is(Code::kNotFound));
  size_t n = 0;
  ASSERT_EQ(fs_->Write(kRoot, a.ino, fh, 0, "data", &n), 0);
  ASSERT_EQ(fs_->Flush(a.ino, fh), 0);
  ASSERT_EQ(fs_->Release(a.ino, fh), 0);
  {
    auto disk = OnDisk();
    ASSERT_NE(disk, nullptr);
    auto rec = disk->GetInode(a.ino);
    ASSERT_TRUE(rec.ok());
    EXPECT_EQ(rec->mode & 07777, 0604u);
    EXPECT_EQ(rec->size, 4u);
  }
  // Once the file is committed, a chmod commits at once.
  chmod.mode = 0644;
  ASSERT_EQ(fs_->SetAttr(kRoot, a.ino, chmod, &a), 0);
  EXPECT_EQ(OnDisk()->GetInode(a.ino)->mode & 07777, 0644u);
  clock_.Advance(1000);
  ASSERT_EQ(fs_->Rename(kRootIno, ".tmp", kRootIno, "final", 0), 0);
  const int64_t renamed_ctime = Get(a.ino).ctime_ns;
  EXPECT_EQ(OnDisk()->GetInode(a.ino)->ctime_ns, renamed_ctime);
  SetAttrRequest refresh;
  refresh.mtime_ns = Get(a.ino).mtime_ns;
  refresh.ctime_ns = renamed_ctime + 5;
  ASSERT_EQ(fs_->SetAttr(kRoot, a.ino, refresh, &a), 0);
  EXPECT_EQ(a.ctime_ns, renamed_ctime + 5);
  EXPECT_EQ(Get(a.ino).ctime_ns, renamed_ctime + 5);
  EXPECT_EQ(OnDisk()->GetInode(a.ino)->ctime_ns, renamed_ctime);
  ASSERT_EQ(fs_->Mkdir(kRoot, kRootIno, "next", 0755, &d), 0);
  EXPECT_EQ(OnDisk()->GetInode(a.ino)->ctime_ns, renamed_ctime + 5);
  // A new mtime is not a refresh: committed at once.
  SetAttrRequest touch;
  touch.mtime_ns = 1'400'000'000'000'000'000;
  ASSERT_EQ(fs_->SetAttr(kRoot, a.ino, touch, &a), 0);
  EXPECT_EQ(OnDisk()->GetInode(a.ino)->mtime_ns, *touch.mtime_ns);
}

// Renaming to a new name moves the entry itself: a directory listing keeps
// its position (a listing in progress sees it once, not under both names).
TEST_F(FilesystemTest, RenameToANewNameKeepsTheListingPosition) {
  MakeFile(kRootIno, "a", "1");
  MakeFile(kRootIno, "b", "2");
  MakeFile(kRootIno, "c", "3");
  uint64_t d = MakeDir(kRootIno, "d");
  ASSERT_EQ(fs_->Rename(kRootIno, "a", kRootIno, "z", 0), 0);
  EXPECT_EQ(List(kRootIno), (std::vector<std::string>{".", "..", "z", "b", "c", "d"}));
  ASSERT_EQ(fs_->Rename(kRootIno, "z", d, "moved", 0), 0);
  EXPECT_EQ(List(d), (std::vector<std::string>{".", "..", "moved"}));
  EXPECT_EQ(ReadAll(Ino(d, "moved")), "1");
  // Over an existing name the target entry is reused.
  ASSERT_EQ(fs_->Rename(kRootIno, "b", kRootIno, "c", 0), 0);
  EXPECT_EQ(List(kRootIno), (std::vector<std::string>{".", "..", "c", "d"}));
  EXPECT_EQ(ReadAll(Ino(kRootIno, "c")), "2");
  Remount();
  EXPECT_EQ(ReadAll(Ino(d, "moved")), "1");
  EXPECT_EQ(List(kRootIno), (std::vector<std::string>{".", "..", "c", "d"}));
}

TEST_F(FilesystemTest, CreateAndNameErrors) {
  MakeFile(kRootIno, "a", "x");
  Attr a;
  uint64_t fh;
  EXPECT_EQ(fs_->Create(kRoot, kRootIno, "a", 0644, O_CREAT | O_EXCL | O_WRONLY, &a, &fh), EEXIST);
  EXPECT_EQ(fs_->Mkdir(kRoot, kRootIno, "a", 0755, &a), EEXIST);
  EXPECT_EQ(fs_->Lookup(kRootIno, "missing", &a), ENOENT);
  std::string long_name(256, 'n');
  EXPECT_EQ(fs_->Mkdir(kRoot, kRootIno, long_name, 0755, &a), ENAMETOOLONG);
  EXPECT_EQ(fs_->Lookup(kRootIno, long_name, &a), ENAMETOOLONG);
  // Any bytes up to 255.
  std::string odd(255, '\xff');
  odd[0] = '\n';
  odd[1] = ' ';
  odd[2] = '\x01';
  uint64_t ino = MakeFile(kRootIno, odd, "odd");
  EXPECT_EQ(Ino(kRootIno, odd), ino);
  Remount();
  EXPECT_EQ(Ino(kRootIno, odd), ino);
  // A file is not a directory.
  EXPECT_EQ(fs_->Lookup(Ino(kRootIno, "a"), "x", &a), ENOTDIR);
  EXPECT_EQ(fs_->Mkdir(kRoot, Ino(kRootIno, "a"), "x", 0755, &a), ENOTDIR);
}

TEST_F(FilesystemTest, MkdirRmdirUnlinkErrors) {
  uint64_t d = MakeDir(kRootIno, "d");
  EXPECT_EQ(Get(kRootIno).nlink, 3u);
  EXPECT_EQ(Get(d).nlink, 2u);
  MakeFile(d, "f", "1");
  EXPECT_EQ(fs_->Rmdir(kRootIno, "d"), ENOTEMPTY);
  EXPECT_EQ(fs_->Rmdir(d, "f"), ENOTDIR);
  EXPECT_EQ(fs_->Unlink(kRootIno, "d"), EISDIR);
  EXPECT_EQ(fs_->Unlink(kRootIno, "nope"), ENOENT);
  EXPECT_EQ(fs_->Rmdir(kRootIno, "nope"), ENOENT);
  EXPECT_EQ(fs_->Unlink(d, "f"), 0);
  EXPECT_EQ(fs_->Rmdir(kRootIno, "d"), 0);
  EXPECT_EQ(Get(kRootIno).nlink, 2u);
  Attr a;
  EXPECT_EQ(fs_->GetAttr(d, &a), ENOENT);
  EXPECT_TRUE(List(kRootIno) == (std::vector<std::string>{".", ".."}));
}

TEST_F(FilesystemTest, HardLinksCountAndSurviveUnlink) {
  uint64_t ino = MakeFile(kRootIno, "a", "data");
  uint64_t d = MakeDir(kRootIno, "d");
  Attr a;
  ASSERT_EQ(fs_->Link(ino, d, "b", &a), 0);
  EXPECT_EQ(a.nlink, 2u);
  EXPECT_EQ(fs_->Link(ino, d, "b", &a), EEXIST);
  EXPECT_EQ(fs_->Link(d, kRootIno, "dirlink", &a), EPERM);
  EXPECT_EQ(fs_->Unlink(kRootIno, "a"), 0);
  EXPECT_EQ(Get(ino).nlink, 1u);
  EXPECT_EQ(ReadAll(Ino(d, "b")), "data");
  Remount();
  EXPECT_EQ(Get(ino).nlink, 1u);
}

TEST_F(FilesystemTest, Symlinks) {
  Attr a;
  std::string target(kPathMax - 1, 't');
  ASSERT_EQ(fs_->Symlink(kUser, kRootIno, "long", target, &a), 0);
  EXPECT_TRUE(S_ISLNK(a.mode));
  EXPECT_EQ(a.size, target.size());
  std::string got;
  EXPECT_EQ(fs_->Readlink(a.ino, &got), 0);
  EXPECT_EQ(got, target);
  EXPECT_EQ(fs_->Symlink(kUser, kRootIno, "toolong", target + "t", &a), ENAMETOOLONG);
  ASSERT_EQ(fs_->Symlink(kUser, kRootIno, "dangling", "/no/such/thing", &a), 0);
  EXPECT_EQ(fs_->Readlink(MakeFile(kRootIno, "f", ""), &got), EINVAL);
  Remount();
  EXPECT_EQ(fs_->Readlink(Ino(kRootIno, "dangling"), &got), 0);
  EXPECT_EQ(got, "/no/such/thing");
}

TEST_F(FilesystemTest, MknodFifoSocketDevice) {
  Attr a;
  ASSERT_EQ(fs_->Mknod(kUser, kRootIno, "fifo", S_IFIFO | 0640, 0, &a), 0);
  EXPECT_TRUE(S_ISFIFO(a.mode));
  ASSERT_EQ(fs_->Mknod(kUser, kRootIno, "sock", S_IFSOCK | 0600, 0, &a), 0);
  EXPECT_TRUE(S_ISSOCK(a.mode));
  ASSERT_EQ(fs_->Mknod(kRoot, kRootIno, "null", S_IFCHR | 0666, makedev(1, 3), &a), 0);
  EXPECT_EQ(a.rdev, makedev(1, 3));
  Remount();
  EXPECT_EQ(Get(Ino(kRootIno, "null")).rdev, makedev(1, 3));
  EXPECT_TRUE(S_ISFIFO(Get(Ino(kRootIno, "fifo")).mode));
  EXPECT_EQ(Get(Ino(kRootIno, "fifo")).uid, 1000u);
}

TEST_F(FilesystemTest, RenameRules) {
  uint64_t a = MakeFile(kRootIno, "a", "A");
  uint64_t b = MakeFile(kRootIno, "b", "B");
  uint64_t d = MakeDir(kRootIno, "d");
  uint64_t e = MakeDir(kRootIno, "e");
  uint64_t sub = MakeDir(d, "sub");
  MakeFile(e, "inside", "x");

  EXPECT_EQ(fs_->Rename(kRootIno, "missing", kRootIno, "z", 0), ENOENT);
  EXPECT_EQ(fs_->Rename(kRootIno, "a", kRootIno, "b", RENAME_NOREPLACE), EEXIST);
  EXPECT_EQ(fs_->Rename(kRootIno, "a", kRootIno, "b", RENAME_NOREPLACE | RENAME_EXCHANGE),
            EINVAL);
  EXPECT_EQ(fs_->Rename(kRootIno, "a", kRootIno, "zz", RENAME_EXCHANGE), ENOENT);
  EXPECT_EQ(fs_->Rename(kRootIno, "d", kRootIno, "a", 0), ENOTDIR);
  EXPECT_EQ(fs_->Rename(kRootIno, "a", kRootIno, "d", 0), EISDIR);
  EXPECT_EQ(fs_->Rename(kRootIno, "d", kRootIno, "e", 0), ENOTEMPTY);
  EXPECT_EQ(fs_->Rename(kRootIno, "d", sub, "x", 0), EINVAL);
  EXPECT_EQ(fs_->Rename(kRootIno, "d", d, "x", 0), EINVAL);

  // Over a file: the old target is gone.
  ASSERT_EQ(fs_->Rename(kRootIno, "a", kRootIno, "b", 0), 0);
  EXPECT_EQ(Ino(kRootIno, "b"), a);
  EXPECT_EQ(Ino(kRootIno, "a"), 0u);
  Attr at;
  EXPECT_EQ(fs_->GetAttr(b, &at), ENOENT);
  // Exchange a file and a directory in different parents.
  ASSERT_EQ(fs_->Rename(kRootIno, "b", d, "sub", RENAME_EXCHANGE), 0);
  EXPECT_EQ(Ino(kRootIno, "b"), sub);
  EXPECT_EQ(Ino(d, "sub"), a);
  EXPECT_EQ(Get(d).nlink, 2u);
  EXPECT_EQ(Get(kRootIno).nlink, 5u);  // d, e, b (a dir now)
  Attr dotdot;
  EXPECT_EQ(fs_->Lookup(sub, "..", &dotdot), 0);
  EXPECT_EQ(dotdot.ino, kRootIno);
  // A directory over an empty directory; nlink of both parents adjusts.
  uint64_t empty = MakeDir(d, "empty");
  ASSERT_EQ(fs_->Rename(kRootIno, "b", d, "empty", 0), 0);
  EXPECT_EQ(fs_->GetAttr(empty, &at), ENOENT);
  EXPECT_EQ(Get(kRootIno).nlink, 4u);
  EXPECT_EQ(Get(d).nlink, 3u);
  // Renaming onto another link of the same file does nothing.
  Attr l;
  ASSERT_EQ(fs_->Link(a, kRootIno, "alink", &l), 0);
  EXPECT_EQ(fs_->Rename(d, "sub", kRootIno, "alink", 0), 0);
  EXPECT_EQ(Ino(d, "sub"), a);
  EXPECT_EQ(Get(a).nlink, 2u);
  Remount();
  EXPECT_EQ(Ino(d, "empty"), sub);
  EXPECT_EQ(ReadAll(Ino(d, "sub")), "A");
}

TEST_F(FilesystemTest, UnlinkWhileOpenKeepsDataUntilRelease) {
  const std::string content = Pattern(2 * kSlice + 5, 9);
  uint64_t ino = MakeFile(kRootIno, "f", content);
  uint64_t fh;
  ASSERT_EQ(fs_->Open(kRoot, ino, O_RDWR, &fh), 0);
  ASSERT_EQ(fs_->Unlink(kRootIno, "f"), 0);
  EXPECT_EQ(Ino(kRootIno, "f"), 0u);
  std::string out;
  ASSERT_EQ(fs_->Read(ino, fh, 0, content.size(), &out), 0);
  EXPECT_TRUE(out == content);
  size_t n;
  EXPECT_EQ(fs_->Write(kRoot, ino, fh, 0, "Z", &n), 0);
  EXPECT_EQ(Get(ino).nlink, 0u);
  ASSERT_EQ(fs_->Release(ino, fh), 0);
  Attr a;
  EXPECT_EQ(fs_->GetAttr(ino, &a), ENOENT);
}

// An inode number names one file for the whole mount: the kernel may still
// hold the number of a file just deleted (and its cached pages), and a file
// whose write-back failed keeps its buffered data under it.
TEST_F(FilesystemTest, InodeNumbersOfDeletedFilesAreNotReused) {
  // The newest (highest-numbered) file; its write-back fails and the close
  // reports it, so its buffered data stays with its inode.
  const uint64_t filler = MakeFileWithFailedClose("filler", Pattern(3 * kSlice, 5));
  Attr a;
  ASSERT_EQ(fs_->Lookup(kRootIno, "filler", &a), 0);  // the kernel holds the inode
  EXPECT_GT(fs_->Stats().dirty_bytes, 0u);
  ASSERT_EQ(fs_->Unlink(kRootIno, "filler"), 0);
  EXPECT_EQ(fs_->Stats().dirty_bytes, 0u) << "the deleted file's buffered data is dropped";

  const uint64_t after = MakeFile(kRootIno, "after", "written after the unlink\n");
  EXPECT_NE(after, filler);
  std::string got = ReadAll(after);
  EXPECT_TRUE(got == "written after the unlink\n") << got.size() << " bytes";
  const uint64_t dir = MakeDir(kRootIno, "d");
  ASSERT_EQ(fs_->Rmdir(kRootIno, "d"), 0);
  EXPECT_NE(MakeDir(kRootIno, "d2"), dir);
  fs_->Forget(filler, 1);

  Remount();
  EXPECT_EQ(Ino(kRootIno, "after"), after);
  EXPECT_EQ(Get(after).size, 25u);
  got = ReadAll(after);
  EXPECT_TRUE(got == "written after the unlink\n") << got.size() << " bytes";
}

// A close whose write-back failed keeps the data for another try: it is not
// dropped when the kernel forgets the inode, and the next FlushAll (meshfs
// sync, unmount) stores it.
TEST_F(FilesystemTest, DataOfAFailedCloseSurvivesForgetUntilStored) {
  const std::string content = Pattern(3 * kSlice + 11, 8);
  const uint64_t ino = MakeFileWithFailedClose("f", content);
  fs_->Forget(ino, fs_->lookup_count(ino));  // the kernel drops the inode
  EXPECT_GT(fs_->Stats().dirty_bytes, 0u);
  faulty_->FailWith(Code::kUnavailable);
  EXPECT_FALSE(fs_->FlushAll(true).ok()) << "the store still fails";
  faulty_->FailWith(Code::kOk);
  ASSERT_TRUE(fs_->FlushAll(true).ok());
  EXPECT_EQ(fs_->Stats().dirty_bytes, 0u);

  Remount();
  EXPECT_EQ(Get(ino).size, content.size());
  EXPECT_TRUE(ReadAll(ino) == content);
}

TEST_F(FilesystemTest, OrphanOfADeadMountIsCleanedAtNextMount) {
  uint64_t ino = MakeFile(kRootIno, "f", "bytes");
  uint64_t fh;
  ASSERT_EQ(fs_->Open(kRoot, ino, O_RDONLY, &fh), 0);
  ASSERT_EQ(fs_->Unlink(kRootIno, "f"), 0);
  EXPECT_EQ(Get(ino).nlink, 0u);
  Remount();  // the handle was never released (the process died)
  Attr a;
  EXPECT_EQ(fs_->GetAttr(ino, &a), ENOENT);
}

TEST_F(FilesystemTest, OpenFlagsTruncAppendExcl) {
  uint64_t ino = MakeFile(kRootIno, "f", "0123456789");
  uint64_t fh;
  size_t n;
  ASSERT_EQ(fs_->Open(kRoot, ino, O_WRONLY | O_APPEND, &fh), 0);
  ASSERT_EQ(fs_->Write(kRoot, ino, fh, 0, "ab", &n), 0);  // offset ignored
  ASSERT_EQ(fs_->Release(ino, fh), 0);
  EXPECT_EQ(ReadAll(ino), "0123456789ab");
  ASSERT_EQ(fs_->Open(kRoot, ino, O_WRONLY | O_TRUNC, &fh), 0);
  EXPECT_EQ(Get(ino).size, 0u);
  ASSERT_EQ(fs_->Release(ino, fh), 0);
  Remount();
  EXPECT_EQ(Get(ino).size, 0u);
  EXPECT_EQ(fs_->Open(kRoot, kRootIno, O_WRONLY, &fh), EISDIR);
}

TEST_F(FilesystemTest, SparseFileBeyond4GiB) {
  const uint64_t off = 5ull << 30;
  Attr a;
  uint64_t fh;
  ASSERT_EQ(fs_->Create(kRoot, kRootIno, "sparse", 0644, O_CREAT | O_RDWR, &a, &fh), 0);
  size_t n;
  ASSERT_EQ(fs_->Write(kRoot, a.ino, fh, off, "tail", &n), 0);
  ASSERT_EQ(fs_->Write(kRoot, a.ino, fh, 100, "head", &n), 0);
  ASSERT_EQ(fs_->Fsync(a.ino, fh, false), 0);
  EXPECT_EQ(store_.size(), 2u) << "holes make no slices";
  uint64_t pos = 0;
  EXPECT_EQ(fs_->Lseek(a.ino, fh, 0, SEEK_DATA, &pos), 0);
  EXPECT_EQ(pos, 0u);
  EXPECT_EQ(fs_->Lseek(a.ino, fh, 0, SEEK_HOLE, &pos), 0);
  EXPECT_EQ(pos, kSlice);
  EXPECT_EQ(fs_->Lseek(a.ino, fh, kSlice, SEEK_DATA, &pos), 0);
  EXPECT_EQ(pos, off / kSlice * kSlice);
  EXPECT_EQ(fs_->Lseek(a.ino, fh, off + 4, SEEK_DATA, &pos), ENXIO);
  EXPECT_EQ(fs_->Lseek(a.ino, fh, 0, SEEK_SET, &pos), EINVAL);
  ASSERT_EQ(fs_->Release(a.ino, fh), 0);
  Remount();
  Attr b = Get(a.ino);
  EXPECT_EQ(b.size, off + 4);
  EXPECT_LT(b.blocks, 2 * kSlice / 512 + 1);
  ASSERT_EQ(fs_->Open(kRoot, a.ino, O_RDONLY, &fh), 0);
  std::string out;
  ASSERT_EQ(fs_->Read(a.ino, fh, off - 2, 100, &out), 0);
  EXPECT_EQ(out, std::string(2, '\0') + "tail");
  ASSERT_EQ(fs_->Read(a.ino, fh, 98, 8, &out), 0);
  EXPECT_EQ(out, std::string("\0\0head\0\0", 8));
  ASSERT_EQ(fs_->Read(a.ino, fh, 3ull << 30, 16, &out), 0);
  EXPECT_EQ(out, std::string(16, '\0'));
  ASSERT_EQ(fs_->Release(a.ino, fh), 0);
}

TEST_F(FilesystemTest, XattrFlagsAndSizes) {
  uint64_t ino = MakeFile(kRootIno, "f", "");
  std::string v;
  EXPECT_EQ(fs_->GetXattr(ino, "user.k", 0, &v), ENODATA);
  EXPECT_EQ(fs_->SetXattr(ino, "user.k", "value", XATTR_REPLACE), ENODATA);
  EXPECT_EQ(fs_->SetXattr(ino, "user.k", "value", XATTR_CREATE), 0);
  EXPECT_EQ(fs_->SetXattr(ino, "user.k", "other", XATTR_CREATE), EEXIST);
  EXPECT_EQ(fs_->SetXattr(ino, "user.k", std::string("v\0w", 3), XATTR_REPLACE), 0);
  EXPECT_EQ(fs_->GetXattr(ino, "user.k", 0, &v), 0);  // size query
  EXPECT_EQ(v.size(), 3u);
  EXPECT_EQ(fs_->GetXattr(ino, "user.k", 2, &v), ERANGE);
  EXPECT_EQ(fs_->GetXattr(ino, "user.k", 3, &v), 0);
  EXPECT_EQ(v, std::string("v\0w", 3));
  EXPECT_EQ(fs_->SetXattr(ino, "user.empty", "", 0), 0);
  EXPECT_EQ(fs_->SetXattr(ino, "bogus.k", "v", 0), EOPNOTSUPP);
  const std::string acl("\x02\x00\x00\x00\x01\x00\x06\x00\xff\xff\xff\xff", 12);
  EXPECT_EQ(fs_->SetXattr(ino, "system.posix_acl_access", acl, 0), 0);
  EXPECT_EQ(fs_->SetXattr(ino, "trusted.t", "1", 0), 0);
  EXPECT_EQ(fs_->SetXattr(ino, "security.selinux", "ctx", 0), 0);
  EXPECT_EQ(fs_->SetXattr(ino, "user.big", std::string(kXattrSizeMax + 1, 'x'), 0), E2BIG);
  std::string list;
  EXPECT_EQ(fs_->ListXattr(ino, 0, &list), 0);
  const std::string expect = std::string("security.selinux\0system.posix_acl_access\0trusted.t\0",
                                         51) + std::string("user.empty\0user.k\0", 18);
  EXPECT_EQ(list, expect);
  EXPECT_EQ(fs_->ListXattr(ino, 5, &list), ERANGE);
  Remount();
  EXPECT_EQ(fs_->GetXattr(ino, "system.posix_acl_access", 0, &v), 0);
  EXPECT_EQ(v, acl);
  EXPECT_EQ(fs_->GetXattr(ino, "user.empty", 0, &v), 0);
  EXPECT_EQ(v, "");
  EXPECT_EQ(fs_->RemoveXattr(ino, "user.k"), 0);
  EXPECT_EQ(fs_->RemoveXattr(ino, "user.k"), ENODATA);
}

TEST_F(FilesystemTest, ChownAndWriteClearSetuidSetgid) {
  uint64_t ino = MakeFile(kRootIno, "f", "", kUser, 06755);
  EXPECT_EQ(Get(ino).mode & 07777, 06755u);
  Attr a;
  SetAttrRequest chown;
  chown.gid = 100;
  ASSERT_EQ(fs_->SetAttr(kUser, ino, chown, &a), 0);
  EXPECT_EQ(a.gid, 100u);
  EXPECT_EQ(a.mode & 07777, 0755u);

  uint64_t g = MakeFile(kRootIno, "g", "x", kUser, 06750);
  uint64_t fh;
  size_t n;
  ASSERT_EQ(fs_->Open(kUser, g, O_WRONLY, &fh), 0);
  ASSERT_EQ(fs_->Write(kUser, g, fh, 0, "y", &n), 0);
  ASSERT_EQ(fs_->Release(g, fh), 0);
  EXPECT_EQ(Get(g).mode & 07777, 0750u);

  // setgid without group exec is a locking mark: kept on write.
  uint64_t h = MakeFile(kRootIno, "h", "x", kUser, 02640);
  ASSERT_EQ(fs_->Open(kUser, h, O_WRONLY, &fh), 0);
  ASSERT_EQ(fs_->Write(kUser, h, fh, 0, "y", &n), 0);
  ASSERT_EQ(fs_->Release(h, fh), 0);
  EXPECT_EQ(Get(h).mode & 07777, 02640u);

  SetAttrRequest chmod;
  chmod.mode = 0600;
  ASSERT_EQ(fs_->SetAttr(kUser, h, chmod, &a), 0);
  EXPECT_EQ(a.mode, static_cast<uint32_t>(S_IFREG | 0600));
}

TEST_F(FilesystemTest, SetgidDirectoryInheritance) {
  uint64_t d = MakeDir(kRootIno, "shared", 02775);
  Attr a;
  SetAttrRequest req;
  req.gid = 500;
  ASSERT_EQ(fs_->SetAttr(kRoot, d, req, &a), 0);
  EXPECT_EQ(a.mode & 07777, 02775u);  // directories keep setgid on chown
  uint64_t f = MakeFile(d, "f", "", kUser);
  EXPECT_EQ(Get(f).gid, 500u);
  uint64_t sub = MakeDir(d, "sub", 0755, kUser);
  EXPECT_EQ(Get(sub).gid, 500u);
  EXPECT_TRUE(Get(sub).mode & S_ISGID);
  uint64_t plain = MakeFile(kRootIno, "p", "", kUser);
  EXPECT_EQ(Get(plain).gid, 1000u);
}

TEST_F(FilesystemTest, UtimensNanosecondsNowAndOmit) {
  uint64_t ino = MakeFile(kRootIno, "f", "x");
  Attr a;
  SetAttrRequest req;
  req.atime_ns = 1'234'567'891'123'456'789;
  req.mtime_ns = 987'654'321'987'654'321;
  ASSERT_EQ(fs_->SetAttr(kRoot, ino, req, &a), 0);
  EXPECT_EQ(a.atime_ns, 1'234'567'891'123'456'789);
  EXPECT_EQ(a.mtime_ns, 987'654'321'987'654'321);
  clock_.Advance(5'000'000);
  SetAttrRequest now;  // atime UTIME_NOW, mtime UTIME_OMIT
  now.atime_ns = SetAttrRequest::kTimeNow;
  ASSERT_EQ(fs_->SetAttr(kRoot, ino, now, &a), 0);
  EXPECT_EQ(a.atime_ns, clock_.NowMicros() * 1000);
  EXPECT_EQ(a.mtime_ns, 987'654'321'987'654'321);
  EXPECT_EQ(a.ctime_ns, clock_.NowMicros() * 1000);
  Remount();
  EXPECT_EQ(Get(ino).mtime_ns, 987'654'321'987'654'321);
}

TEST_F(FilesystemTest, WritesUpdateMtimeAndRelatime) {
  uint64_t ino = MakeFile(kRootIno, "f", "x");
  int64_t t0 = Get(ino).mtime_ns;
  clock_.Advance(2'000'000);
  uint64_t fh;
  size_t n;
  ASSERT_EQ(fs_->Open(kRoot, ino, O_RDWR, &fh), 0);
  ASSERT_EQ(fs_->Write(kRoot, ino, fh, 1, "y", &n), 0);
  EXPECT_GT(Get(ino).mtime_ns, t0);  // visible before the flush
  ASSERT_EQ(fs_->Release(ino, fh), 0);
  int64_t t1 = Get(ino).mtime_ns;
  EXPECT_GT(t1, t0);
  clock_.Advance(1'000'000);
  EXPECT_EQ(ReadAll(ino), "xy");
  int64_t at = Get(ino).atime_ns;
  EXPECT_GT(at, t1) << "atime older than mtime is updated on read";
  clock_.Advance(1'000'000);
  ReadAll(ino);
  EXPECT_EQ(Get(ino).atime_ns, at) << "relatime: not again until modified or a day passes";
  clock_.Advance(25LL * 3600 * 1'000'000);
  ReadAll(ino);
  EXPECT_GT(Get(ino).atime_ns, at);
}

TEST_F(FilesystemTest, TruncateAcrossSliceBoundaries) {
  const std::string content = Pattern(3 * kSlice + 100, 11);
  uint64_t ino = MakeFile(kRootIno, "f", content);
  Attr a;
  SetAttrRequest req;
  req.size = kSlice + 10;
  ASSERT_EQ(fs_->SetAttr(kRoot, ino, req, &a), 0);
  EXPECT_EQ(a.size, kSlice + 10);
  req.size = 2 * kSlice + 7;  // grow again: the cut part reads as zeros
  ASSERT_EQ(fs_->SetAttr(kRoot, ino, req, &a), 0);
  std::string expect = content.substr(0, kSlice + 10) + std::string(kSlice - 3, '\0');
  EXPECT_TRUE(ReadAll(ino) == expect);
  Remount();
  EXPECT_TRUE(ReadAll(ino) == expect);
  req.size = 0;
  ASSERT_EQ(fs_->SetAttr(kRoot, ino, req, &a), 0);
  EXPECT_EQ(ReadAll(ino), "");
  EXPECT_EQ(Get(ino).blocks, 0u);
  SetAttrRequest dir;
  dir.size = 0;
  EXPECT_EQ(fs_->SetAttr(kRoot, kRootIno, dir, &a), EISDIR);
}

// Random writes, truncates, reads and remounts against an in-memory model.
TEST_F(FilesystemTest, RandomizedAgainstModel) {
  std::mt19937 rng(1234);
  std::string model;
  uint64_t ino = MakeFile(kRootIno, "f", "");
  uint64_t fh;
  ASSERT_EQ(fs_->Open(kRoot, ino, O_RDWR, &fh), 0);
  const uint64_t span = 5 * kSlice;
  for (int step = 0; step < 400; ++step) {
    int op = rng() % 10;
    if (op < 5) {
      uint64_t off = rng() % span;
      size_t len = 1 + rng() % (op == 0 ? 2 * kSlice : 5000);
      std::string data = Pattern(len, rng());
      size_t n;
      ASSERT_EQ(fs_->Write(kRoot, ino, fh, off, data, &n), 0);
      if (model.size() < off + len) model.resize(off + len, '\0');
      model.replace(off, len, data);
    } else if (op < 7) {
      uint64_t size = rng() % span;
      Attr a;
      SetAttrRequest req;
      req.size = size;
      ASSERT_EQ(fs_->SetAttr(kRoot, ino, req, &a), 0);
      model.resize(size, '\0');
    } else if (op < 9) {
      uint64_t off = rng() % (span + 10);
      uint64_t len = rng() % (2 * kSlice);
      std::string out;
      ASSERT_EQ(fs_->Read(ino, fh, off, len, &out), 0);
      std::string expect = off < model.size() ? model.substr(off, len) : "";
      ASSERT_TRUE(out == expect) << "step " << step << " off " << off << " len " << len;
    } else if (rng() % 4 == 0) {
      ASSERT_EQ(fs_->Release(ino, fh), 0);
      Remount();
      ASSERT_EQ(fs_->Open(kRoot, ino, O_RDWR, &fh), 0);
    } else {
      ASSERT_EQ(fs_->Flush(ino, fh), 0);
    }
    ASSERT_EQ(Get(ino).size, model.size()) << "step " << step;
  }
  ASSERT_EQ(fs_->Release(ino, fh), 0);
  Remount();
  EXPECT_TRUE(ReadAll(ino) == model);
}

// A store whose Get is slow and counted.
class SlowCountingStore final : public SliceStore {
 public:
  explicit SlowCountingStore(SliceStore* base) : base_(base) {}
  Status Put(const SliceId& id, std::string_view blob) override { return base_->Put(id, blob); }
  Result<std::string> Get(const SliceId& id) override {
    gets.fetch_add(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return base_->Get(id);
  }
  Result<bool> Contains(const SliceId& id) override { return base_->Contains(id); }
  Status Remove(const SliceId& id) override { return base_->Remove(id); }
  Status Flush() override { return base_->Flush(); }
  std::atomic<int> gets{0};

 private:
  SliceStore* base_;
};

// Readers of the same slice at the same time share one load: the store is
// asked once, and every reader gets the bytes.
TEST_F(FilesystemTest, ConcurrentReadsOfASliceLoadItOnce) {
  const std::string content = Pattern(kSlice, 3);
  uint64_t ino = MakeFile(kRootIno, "f", content);
  fs_.reset();
  SlowCountingStore slow(&store_);
  Filesystem::Options o;
  o.metadata_path = dir_ / "metadata.db";
  o.slice_size = kSlice;
  o.volume_id = "test-volume";
  o.codec = codec_.get();
  o.store = &slow;
  o.clock = &clock_;
  auto opened = Filesystem::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  fs_ = std::move(*opened);
  std::vector<std::string> got(4);
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&, i] {
      uint64_t fh = 0;
      ASSERT_EQ(fs_->Open(kRoot, ino, O_RDONLY, &fh), 0);
      EXPECT_EQ(fs_->Read(ino, fh, 100 * i, 1000, &got[i]), 0);
      EXPECT_EQ(fs_->Release(ino, fh), 0);
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(slow.gets.load(), 1);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(got[i] == content.substr(100 * i, 1000)) << i;
  fs_.reset();
}

TEST_F(FilesystemTest, StoreFailureIsEioAndLosesNothingAcknowledged) {
  const std::string first = Pattern(2 * kSlice, 21);
  uint64_t ino = MakeFile(kRootIno, "f", first);
  faulty_->FailWith(Code::kUnavailable);
  uint64_t fh;
  size_t n;
  ASSERT_EQ(fs_->Open(kRoot, ino, O_RDWR, &fh), 0);
  // A full slice is written back asynchronously: the write is accepted and
  // the store's failure is reported by the next fsync (the data stays buffered).
  EXPECT_EQ(fs_->Write(kRoot, ino, fh, 2 * kSlice, Pattern(kSlice, 22), &n), 0);
  EXPECT_EQ(fs_->Fsync(ino, fh, false), EIO);
  faulty_->FailWith(Code::kOk);
  ASSERT_EQ(fs_->Release(ino, fh), 0);
  Remount();
  Attr a = Get(ino);
  EXPECT_EQ(a.size, 3 * kSlice) << "the buffered data was written once the store came back";
  EXPECT_TRUE(ReadAll(ino).substr(0, 2 * kSlice) == first);

  // Reads of data not in the plaintext cache fail with EIO, then recover.
  Remount();
  faulty_->FailWith(Code::kUnavailable);
  ASSERT_EQ(fs_->Open(kRoot, ino, O_RDONLY, &fh), 0);
  std::string out;
  EXPECT_EQ(fs_->Read(ino, fh, 0, 10, &out), EIO);
  faulty_->FailWith(Code::kOk);
  EXPECT_EQ(fs_->Read(ino, fh, 0, 10, &out), 0);
  EXPECT_EQ(out, first.substr(0, 10));
  ASSERT_EQ(fs_->Release(ino, fh), 0);

  // A damaged blob is EIO, never wrong bytes.
  Remount();
  std::vector<SliceId> ids;
  // Find the slice of the first 64 KiB by re-encoding it (the codec is deterministic).
  auto enc = codec_->Encode(first.substr(0, kSlice));
  ASSERT_TRUE(enc.ok());
  store_.Tamper(enc->id, enc->blob.substr(0, enc->blob.size() - 1) + "X");
  ASSERT_EQ(fs_->Open(kRoot, ino, O_RDONLY, &fh), 0);
  EXPECT_EQ(fs_->Read(ino, fh, 0, 10, &out), EIO);
  ASSERT_EQ(fs_->Release(ino, fh), 0);
}

TEST_F(FilesystemTest, ReadDirOffsetsAndLookupCounts) {
  std::vector<std::string> names;
  for (int i = 0; i < 300; ++i) names.push_back("file" + std::to_string(i));
  for (const auto& n : names) MakeFile(kRootIno, n, "");
  ASSERT_EQ(fs_->Unlink(kRootIno, "file7"), 0);
  // Read in small chunks, resuming at the offset of the last entry taken.
  std::vector<std::string> seen;
  uint64_t off = 0;
  for (;;) {
    int taken = 0;
    ASSERT_EQ(fs_->ReadDir(kRootIno, off, true, [&](std::string_view n, const Attr& a,
                                                     uint64_t next) {
      if (taken == 7) return false;
      ++taken;
      seen.emplace_back(n);
      if (n != "." && n != "..") {
        EXPECT_TRUE(S_ISREG(a.mode));
        EXPECT_EQ(a.nlink, 1u);
      }
      off = next;
      return true;
    }), 0);
    if (taken == 0) break;
  }
  ASSERT_EQ(seen.size(), 301u);
  EXPECT_EQ(seen[0], ".");
  EXPECT_EQ(seen[1], "..");
  EXPECT_EQ(std::count(seen.begin(), seen.end(), "file7"), 0);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), "file299"), 1);
  // readdirplus raised the count of each entry once (on top of create's).
  uint64_t ino = Ino(kRootIno, "file5");  // +1 more
  EXPECT_EQ(fs_->lookup_count(ino), 3u);
  fs_->Forget(ino, 3);
  EXPECT_EQ(fs_->lookup_count(ino), 0u);
  EXPECT_EQ(fs_->ReadDir(Ino(kRootIno, "file1"), 0, false,
                         [](std::string_view, const Attr&, uint64_t) { return true; }),
            ENOTDIR);
}

TEST_F(FilesystemTest, FallocateStatfsAndFsyncDir) {
  Attr a;
  uint64_t fh;
  ASSERT_EQ(fs_->Create(kRoot, kRootIno, "f", 0644, O_CREAT | O_RDWR, &a, &fh), 0);
  EXPECT_EQ(fs_->Fallocate(a.ino, fh, 0, 0, 3 * kSlice), 0);
  EXPECT_EQ(Get(a.ino).size, 3 * kSlice);
  EXPECT_EQ(fs_->Fallocate(a.ino, fh, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 10),
            EOPNOTSUPP);
  ASSERT_EQ(fs_->Release(a.ino, fh), 0);
  EXPECT_EQ(fs_->FsyncDir(kRootIno), 0);
  StatFsInfo s;
  ASSERT_EQ(fs_->StatFs(&s), 0);
  EXPECT_GT(s.total_bytes, 0u);
  EXPECT_EQ(s.name_max, 255u);
}

TEST_F(FilesystemTest, DirtyMemoryIsBoundedAcrossFiles) {
  Attr a, b;
  uint64_t fa, fb;
  size_t n;
  ASSERT_EQ(fs_->Create(kRoot, kRootIno, "a", 0644, O_CREAT | O_RDWR, &a, &fa), 0);
  ASSERT_EQ(fs_->Create(kRoot, kRootIno, "b", 0644, O_CREAT | O_RDWR, &b, &fb), 0);
  // Partial slices never complete, so only the bounds write them back.
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_EQ(fs_->Write(kRoot, a.ino, fa, i * kSlice, Pattern(kSlice - 1, 10 + i), &n), 0);
  }
  EXPECT_EQ(store_.size(), 0u);
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_EQ(fs_->Write(kRoot, b.ino, fb, i * kSlice, Pattern(kSlice - 1, 20 + i), &n), 0);
  }
  EXPECT_GE(store_.size(), 3u) << "the other file was written back";
  EXPECT_LE(fs_->Stats().dirty_bytes, 4u * kSlice);
  ASSERT_EQ(fs_->Release(a.ino, fa), 0);
  ASSERT_EQ(fs_->Release(b.ino, fb), 0);
  EXPECT_EQ(fs_->Stats().dirty_bytes, 0u);
  EXPECT_TRUE(ReadAll(a.ino).substr(2 * kSlice) == Pattern(kSlice - 1, 12));
}

TEST(FilesystemStatfs, UsesThePeersFreeSpace) {
  char tmpl[] = "/tmp/meshfs-fs-statfs-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  testing::MemoryStore store;
  SliceCodec codec(TestKeys(), kSlice);
  Filesystem::Options o;
  o.metadata_path = std::filesystem::path(tmpl) / "metadata.db";
  o.slice_size = kSlice;
  o.codec = &codec;
  o.store = &store;
  o.statfs = [] {
    StatFsInfo s;
    s.total_bytes = 3ull << 40;
    s.free_bytes = s.avail_bytes = 1ull << 40;
    return std::optional<StatFsInfo>(s);
  };
  {
    auto fs = Filesystem::Open(o);
    ASSERT_TRUE(fs.ok());
    StatFsInfo s;
    ASSERT_EQ((*fs)->StatFs(&s), 0);
    EXPECT_EQ(s.total_bytes, 3ull << 40);
    EXPECT_EQ(s.avail_bytes, 1ull << 40);
  }
  // The metadata remembers its slice size and volume: a mismatch is refused.
  o.slice_size = 2 * kSlice;
  EXPECT_FALSE(Filesystem::Open(o).ok());
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace meshfs::fs
