// MetadataStore on a real SQLite file: schema creation, reopen, inode and
// entry round trips, readdir cookies, xattrs, extents, and refusal of a
// database that belongs to another volume or a newer meshfs.
#include "meshfs/fs/metadata.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <tuple>
#include <vector>

namespace meshfs::fs {
namespace {

class MetadataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/meshfs-meta-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Open();
  }
  void TearDown() override {
    m_.reset();
    std::filesystem::remove_all(dir_);
  }
  MetadataStore::Options Opts() {
    MetadataStore::Options o;
    o.path = dir_ / "metadata.db";
    o.slice_size = 65536;
    o.volume_id = "vol-a";
    o.root_uid = 1000;
    o.root_gid = 100;
    o.now_ns = 123;
    return o;
  }
  void Open() {
    m_.reset();
    auto m = MetadataStore::Open(Opts());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    m_ = std::move(*m);
  }
  std::filesystem::path dir_;
  std::unique_ptr<MetadataStore> m_;
};

TEST_F(MetadataTest, NewDatabaseHasRoot) {
  auto root = m_->GetInode(kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_TRUE(S_ISDIR(root->mode));
  EXPECT_EQ(root->uid, 1000u);
  EXPECT_EQ(root->gid, 100u);
  EXPECT_EQ(root->nlink, 2u);
  EXPECT_EQ(m_->slice_size(), 65536u);
  EXPECT_EQ(m_->volume_id(), "vol-a");
  EXPECT_TRUE(m_->GetInode(99).status().Is(Code::kNotFound));
}

// The reserve that lets removals commit on a full disk: made at open, given
// back once, made again at the next open.
TEST_F(MetadataTest, ReserveIsMadeAtOpenAndGivenBackOnce) {
  const auto reserve = dir_ / "metadata.db.reserve";
  ASSERT_TRUE(std::filesystem::exists(reserve));
  EXPECT_EQ(std::filesystem::file_size(reserve), MetadataStore::kReserveBytes);
  EXPECT_TRUE(m_->has_reserve());
  EXPECT_TRUE(m_->ReleaseReserve());
  EXPECT_FALSE(std::filesystem::exists(reserve));
  EXPECT_FALSE(m_->has_reserve());
  EXPECT_FALSE(m_->ReleaseReserve());  // nothing left to give
  Open();
  EXPECT_TRUE(std::filesystem::exists(reserve));
}

TEST_F(MetadataTest, RecordsSurviveReopen) {
  ASSERT_TRUE(m_->Begin().ok());
  InodeRecord r;
  r.mode = S_IFREG | 0640;
  r.uid = 7;
  r.nlink = 1;
  r.size = 1ull << 40;
  r.mtime_ns = -5;  // before 1970
  auto ino = m_->InsertInode(r);
  ASSERT_TRUE(ino.ok());
  std::string name("n\0\xff", 3);
  ASSERT_TRUE(m_->InsertDentry(kRootIno, name, *ino).ok());
  EXPECT_TRUE(m_->InsertDentry(kRootIno, name, *ino).Is(Code::kAlreadyExists));
  ASSERT_TRUE(m_->SetXattr(*ino, "user.a", std::string("\0v", 2)).ok());
  ExtentRecord e{3, SliceId::ForBlob("x"), 777};
  ASSERT_TRUE(m_->PutExtent(*ino, e).ok());
  ASSERT_TRUE(m_->SetInline(*ino, std::nullopt).ok());
  ASSERT_TRUE(m_->Commit(true).ok());
  Open();
  auto got = m_->GetInode(*ino);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->mode, static_cast<uint32_t>(S_IFREG | 0640));
  EXPECT_EQ(got->size, 1ull << 40);
  EXPECT_EQ(got->mtime_ns, -5);
  EXPECT_EQ(got->alloc, 777u);
  EXPECT_EQ(*m_->Lookup(kRootIno, name), *ino);
  EXPECT_EQ(*m_->GetXattr(*ino, "user.a"), std::string("\0v", 2));
  auto ext = m_->ListExtents(*ino);
  ASSERT_TRUE(ext.ok());
  ASSERT_EQ(ext->size(), 1u);
  EXPECT_EQ((*ext)[0].slice, e.slice);
  EXPECT_EQ((*ext)[0].len, 777u);
  EXPECT_FALSE(m_->GetInline(*ino)->has_value());
}

TEST_F(MetadataTest, RollbackLeavesNothing) {
  ASSERT_TRUE(m_->Begin().ok());
  InodeRecord r;
  r.mode = S_IFDIR | 0755;
  r.nlink = 2;
  auto ino = m_->InsertInode(r);
  ASSERT_TRUE(ino.ok());
  ASSERT_TRUE(m_->InsertDentry(kRootIno, "d", *ino).ok());
  m_->Rollback();
  EXPECT_TRUE(m_->Lookup(kRootIno, "d").status().Is(Code::kNotFound));
  EXPECT_TRUE(m_->GetInode(*ino).status().Is(Code::kNotFound));
}

// What a kill -9 of the process would leave: the database and its WAL as
// they are on disk now, opened by a new store.
std::unique_ptr<MetadataStore> OnDiskCopy(const MetadataStore::Options& live,
                                          const std::filesystem::path& dir) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const char* suffix : {"", "-wal"}) {
    std::filesystem::path from = live.path.string() + suffix;
    if (std::filesystem::exists(from)) {
      std::filesystem::copy_file(from, dir / (live.path.filename().string() + suffix));
    }
  }
  MetadataStore::Options o = live;
  o.path = dir / live.path.filename();
  auto m = MetadataStore::Open(o);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return m.ok() ? std::move(*m) : nullptr;
}

uint64_t InsertDir(MetadataStore* m, std::string_view name) {
  InodeRecord r;
  r.mode = S_IFDIR | 0755;
  r.nlink = 2;
  auto ino = m->InsertInode(r);
  EXPECT_TRUE(ino.ok());
  EXPECT_TRUE(m->InsertDentry(kRootIno, name, *ino).ok());
  return *ino;
}

// An inode number is never handed out twice, not even the number of the
// newest file after it was deleted: across a reopen, a kill -9, a rollback,
// and past the high-water mark's steps.
TEST_F(MetadataTest, InodeNumbersAreNeverReused) {
  auto remove = [](MetadataStore* m, std::string_view name, uint64_t ino) {
    ASSERT_TRUE(m->Begin().ok());
    ASSERT_TRUE(m->DeleteDentry(kRootIno, name).ok());
    ASSERT_TRUE(m->DeleteInode(ino).ok());
    ASSERT_TRUE(m->Commit().ok());
  };
  ASSERT_TRUE(m_->Begin().ok());
  const uint64_t a = InsertDir(m_.get(), "a");
  ASSERT_TRUE(m_->Commit().ok());
  remove(m_.get(), "a", a);
  ASSERT_TRUE(m_->Begin().ok());
  const uint64_t b = InsertDir(m_.get(), "b");
  m_->Rollback();
  ASSERT_TRUE(m_->Begin().ok());
  const uint64_t c = InsertDir(m_.get(), "c");
  ASSERT_TRUE(m_->Commit().ok());
  EXPECT_GT(b, a);
  EXPECT_GT(c, b);

  remove(m_.get(), "c", c);
  Open();
  ASSERT_TRUE(m_->Begin().ok());
  const uint64_t d = InsertDir(m_.get(), "d");
  ASSERT_TRUE(m_->Commit().ok());
  EXPECT_GT(d, c) << "reopened";

  // Past several steps of the mark, then a crash right after the newest
  // inode was deleted.
  ASSERT_TRUE(m_->Begin().ok());
  uint64_t last = 0;
  for (int i = 0; i < 10000; i++) last = InsertDir(m_.get(), std::to_string(i));
  ASSERT_TRUE(m_->Commit().ok());
  EXPECT_EQ(last, d + 10000);
  remove(m_.get(), "9999", last);
  auto disk = OnDiskCopy(Opts(), dir_ / "crash");
  ASSERT_NE(disk, nullptr);
  ASSERT_TRUE(disk->Begin().ok());
  EXPECT_GT(InsertDir(disk.get(), "e"), last) << "after a kill -9";
  disk->Rollback();
}

TEST_F(MetadataTest, DeferredWorkIsCommittedWithTheNextOperation) {
  ASSERT_TRUE(m_->Begin().ok());
  InsertDir(m_.get(), "a");
  ASSERT_TRUE(m_->CommitLater().ok());
  EXPECT_TRUE(m_->has_pending());
  EXPECT_TRUE(m_->Lookup(kRootIno, "a").ok());  // visible to this store at once
  {
    auto disk = OnDiskCopy(Opts(), dir_ / "crash1");
    ASSERT_NE(disk, nullptr);
    EXPECT_TRUE(disk->Lookup(kRootIno, "a").status().Is(Code::kNotFound));
  }
  ASSERT_TRUE(m_->Begin().ok());
  InsertDir(m_.get(), "b");
  ASSERT_TRUE(m_->Commit().ok());
  EXPECT_FALSE(m_->has_pending());
  auto disk = OnDiskCopy(Opts(), dir_ / "crash2");
  ASSERT_NE(disk, nullptr);
  EXPECT_TRUE(disk->Lookup(kRootIno, "a").ok());
  EXPECT_TRUE(disk->Lookup(kRootIno, "b").ok());
}

TEST_F(MetadataTest, RollbackUndoesOnlyItsOwnOperationAndCommitsDeferredWork) {
  ASSERT_TRUE(m_->Begin().ok());
  InsertDir(m_.get(), "kept");
  ASSERT_TRUE(m_->CommitLater().ok());
  ASSERT_TRUE(m_->Begin().ok());
  InsertDir(m_.get(), "undone");
  m_->Rollback();
  EXPECT_FALSE(m_->has_pending());
  EXPECT_TRUE(m_->Lookup(kRootIno, "kept").ok());
  EXPECT_TRUE(m_->Lookup(kRootIno, "undone").status().Is(Code::kNotFound));
  auto disk = OnDiskCopy(Opts(), dir_ / "crash");
  ASSERT_NE(disk, nullptr);
  EXPECT_TRUE(disk->Lookup(kRootIno, "kept").ok());
  EXPECT_TRUE(disk->Lookup(kRootIno, "undone").status().Is(Code::kNotFound));
  // The store is usable afterwards: a new transaction begins and commits.
  ASSERT_TRUE(m_->Begin().ok());
  InsertDir(m_.get(), "later");
  ASSERT_TRUE(m_->Commit().ok());
  EXPECT_TRUE(m_->Lookup(kRootIno, "later").ok());
}

TEST_F(MetadataTest, SyncCommitPendingAndCloseCommitDeferredWork) {
  ASSERT_TRUE(m_->Begin().ok());
  InsertDir(m_.get(), "synced");
  ASSERT_TRUE(m_->CommitLater().ok());
  ASSERT_TRUE(m_->Sync().ok());
  EXPECT_FALSE(m_->has_pending());
  {
    auto disk = OnDiskCopy(Opts(), dir_ / "crash1");
    ASSERT_NE(disk, nullptr);
    EXPECT_TRUE(disk->Lookup(kRootIno, "synced").ok());
  }
  ASSERT_TRUE(m_->Begin().ok());
  InsertDir(m_.get(), "explicit");
  ASSERT_TRUE(m_->CommitLater().ok());
  ASSERT_TRUE(m_->CommitPending().ok());
  EXPECT_FALSE(m_->has_pending());
  EXPECT_TRUE(m_->CommitPending().ok());  // nothing pending: a no-op
  {
    auto disk = OnDiskCopy(Opts(), dir_ / "crash2");
    ASSERT_NE(disk, nullptr);
    EXPECT_TRUE(disk->Lookup(kRootIno, "explicit").ok());
  }
  ASSERT_TRUE(m_->Begin().ok());
  InsertDir(m_.get(), "closed");
  ASSERT_TRUE(m_->CommitLater().ok());
  Open();  // closes the store first
  EXPECT_TRUE(m_->Lookup(kRootIno, "closed").ok());
}

// GetInode answers from a cache of rows: it must show every committed
// change, the stored bytes after a change of the blobs, and, after a
// rollback, what the database holds (not the undone change).
TEST_F(MetadataTest, InodeReadsFollowWritesAndRollbacks) {
  ASSERT_TRUE(m_->Begin().ok());
  InodeRecord r;
  r.mode = S_IFREG | 0644;
  r.nlink = 1;
  r.mtime_ns = 10;
  auto ino = m_->InsertInode(r);
  ASSERT_TRUE(ino.ok());
  ASSERT_TRUE(m_->Commit().ok());
  auto got = m_->GetInode(*ino);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->mtime_ns, 10);
  EXPECT_EQ(got->alloc, 0u);

  // A committed update is seen.
  InodeRecord u = *got;
  u.mtime_ns = 20;
  u.size = 5;
  ASSERT_TRUE(m_->Begin().ok());
  ASSERT_TRUE(m_->UpdateInode(u).ok());
  ASSERT_TRUE(m_->SetInline(*ino, std::string_view("hello")).ok());
  ASSERT_TRUE(m_->Commit().ok());
  got = m_->GetInode(*ino);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->mtime_ns, 20);
  EXPECT_EQ(got->size, 5u);
  EXPECT_EQ(got->alloc, 5u);  // the inline bytes

  // Extents change the stored bytes too.
  ASSERT_TRUE(m_->Begin().ok());
  ASSERT_TRUE(m_->SetInline(*ino, std::nullopt).ok());
  ExtentRecord e;
  e.idx = 0;
  e.slice = SliceId::ForBlob("blob");
  e.len = 1000;
  ASSERT_TRUE(m_->PutExtent(*ino, e).ok());
  ASSERT_TRUE(m_->Commit().ok());
  EXPECT_EQ(m_->GetInode(*ino)->alloc, 1000u);
  ASSERT_TRUE(m_->Begin().ok());
  ASSERT_TRUE(m_->DeleteExtentsFrom(*ino, 0).ok());
  ASSERT_TRUE(m_->Commit().ok());
  EXPECT_EQ(m_->GetInode(*ino)->alloc, 0u);

  // A rolled back update is not seen, also not inside a pending transaction.
  u = *m_->GetInode(*ino);
  u.mtime_ns = 30;
  ASSERT_TRUE(m_->Begin().ok());
  ASSERT_TRUE(m_->UpdateInode(u).ok());
  EXPECT_EQ(m_->GetInode(*ino)->mtime_ns, 30);  // this transaction sees it
  m_->Rollback();
  EXPECT_EQ(m_->GetInode(*ino)->mtime_ns, 20);
  ASSERT_TRUE(m_->Begin().ok());
  InsertDir(m_.get(), "pending");
  ASSERT_TRUE(m_->CommitLater().ok());
  ASSERT_TRUE(m_->Begin().ok());
  u.mtime_ns = 40;
  ASSERT_TRUE(m_->UpdateInode(u).ok());
  m_->Rollback();
  EXPECT_EQ(m_->GetInode(*ino)->mtime_ns, 20);

  // A deleted inode is gone; a reopened store reads what was committed.
  ASSERT_TRUE(m_->Begin().ok());
  ASSERT_TRUE(m_->DeleteInode(*ino).ok());
  m_->Rollback();
  EXPECT_TRUE(m_->GetInode(*ino).ok());
  ASSERT_TRUE(m_->Begin().ok());
  ASSERT_TRUE(m_->DeleteInode(*ino).ok());
  ASSERT_TRUE(m_->Commit().ok());
  EXPECT_TRUE(m_->GetInode(*ino).status().Is(Code::kNotFound));
  Open();
  EXPECT_TRUE(m_->GetInode(*ino).status().Is(Code::kNotFound));
  EXPECT_TRUE(m_->Lookup(kRootIno, "pending").ok());
}

// GetXattr answers a name no inode has without a query; a name set later,
// or set before the store was opened, is found.
TEST_F(MetadataTest, XattrNamesSetLaterOrBeforeAreFound) {
  ASSERT_TRUE(m_->Begin().ok());
  uint64_t a = InsertDir(m_.get(), "a");
  uint64_t b = InsertDir(m_.get(), "b");
  ASSERT_TRUE(m_->SetXattr(a, "user.old", "1").ok());
  ASSERT_TRUE(m_->Commit().ok());
  Open();
  EXPECT_TRUE(m_->GetXattr(a, "security.capability").status().Is(Code::kNotFound));
  EXPECT_EQ(*m_->GetXattr(a, "user.old"), "1");
  EXPECT_TRUE(m_->GetXattr(b, "user.old").status().Is(Code::kNotFound));
  EXPECT_TRUE(m_->GetXattr(b, "user.new").status().Is(Code::kNotFound));
  ASSERT_TRUE(m_->Begin().ok());
  ASSERT_TRUE(m_->SetXattr(b, "user.new", "2").ok());
  ASSERT_TRUE(m_->Commit().ok());
  EXPECT_EQ(*m_->GetXattr(b, "user.new"), "2");
  EXPECT_TRUE(*m_->HasXattr(b, "user.new"));
  EXPECT_TRUE(m_->GetXattr(a, "user.new").status().Is(Code::kNotFound));
}

TEST_F(MetadataTest, MoveDentryKeepsTheCookie) {
  ASSERT_TRUE(m_->Begin().ok());
  uint64_t a = InsertDir(m_.get(), "a");
  uint64_t b = InsertDir(m_.get(), "b");
  InsertDir(m_.get(), "c");
  ASSERT_TRUE(m_->Commit().ok());
  auto cookies = [&](uint64_t dir) {
    std::vector<std::pair<uint64_t, std::string>> out;
    EXPECT_TRUE(m_->ListDir(dir, 0, [&](const DirEntryRecord& e) {
      out.emplace_back(e.cookie, e.name);
      return true;
    }).ok());
    return out;
  };
  auto before = cookies(kRootIno);
  ASSERT_EQ(before.size(), 3u);
  ASSERT_TRUE(m_->Begin().ok());
  ASSERT_TRUE(m_->MoveDentry(kRootIno, "a", kRootIno, "z").ok());
  ASSERT_TRUE(m_->Commit().ok());
  auto after = cookies(kRootIno);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[0].first, before[0].first);
  EXPECT_EQ(after[0].second, "z");
  EXPECT_EQ(*m_->Lookup(kRootIno, "z"), a);
  EXPECT_TRUE(m_->Lookup(kRootIno, "a").status().Is(Code::kNotFound));
  // Into another directory: its parent changes too.
  ASSERT_TRUE(m_->MoveDentry(kRootIno, "z", b, "inner").ok());
  EXPECT_EQ(*m_->Lookup(b, "inner"), a);
  EXPECT_EQ(*m_->ParentOf(a), b);
  EXPECT_EQ(cookies(b).size(), 1u);
  // A taken name, a missing entry.
  EXPECT_TRUE(m_->MoveDentry(kRootIno, "b", kRootIno, "c").Is(Code::kAlreadyExists));
  EXPECT_TRUE(m_->MoveDentry(kRootIno, "missing", kRootIno, "x").Is(Code::kNotFound));
  EXPECT_EQ(*m_->Lookup(kRootIno, "b"), b);
}

TEST_F(MetadataTest, ListDirResumesByCookie) {
  ASSERT_TRUE(m_->Begin().ok());
  for (int i = 0; i < 50; ++i) {
    InodeRecord r;
    r.mode = S_IFREG | 0644;
    r.nlink = 1;
    auto ino = m_->InsertInode(r);
    ASSERT_TRUE(ino.ok());
    std::string name = "f";
    name += std::to_string(i);
    ASSERT_TRUE(m_->InsertDentry(kRootIno, name, *ino).ok());
  }
  ASSERT_TRUE(m_->Commit().ok());
  std::vector<std::string> names;
  uint64_t after = 0;
  for (;;) {
    size_t before = names.size();
    ASSERT_TRUE(m_->ListDir(kRootIno, after, [&](const DirEntryRecord& e) {
      names.push_back(e.name);
      after = e.cookie;
      return names.size() - before < 7;
    }).ok());
    if (names.size() == before) break;
  }
  ASSERT_EQ(names.size(), 50u);
  EXPECT_EQ(names.front(), "f0");
  EXPECT_EQ(names.back(), "f49");
  EXPECT_FALSE(*m_->DirIsEmpty(kRootIno));
}

// A database of schema 1 (entries with rowid cookies and three indexes), as
// an older meshfs left it: a read-write open upgrades it keeping every entry
// and its readdir cookie; a read-only open reads it as it is.
TEST_F(MetadataTest, SchemaOneIsUpgradedOrReadAsItIs) {
  m_.reset();
  const std::filesystem::path v1 = dir_ / "v1.db";
  {
    sqlite3* db;
    ASSERT_EQ(sqlite3_open(v1.c_str(), &db), SQLITE_OK);
    const char* sql = R"sql(
      CREATE TABLE meta(key TEXT PRIMARY KEY, value BLOB);
      CREATE TABLE inodes(ino INTEGER PRIMARY KEY, mode INTEGER NOT NULL, uid INTEGER NOT NULL,
        gid INTEGER NOT NULL, nlink INTEGER NOT NULL, size INTEGER NOT NULL,
        atime_ns INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
        btime_ns INTEGER NOT NULL, rdev INTEGER NOT NULL, gen INTEGER NOT NULL, inline BLOB,
        target BLOB);
      CREATE TABLE dentries(parent INTEGER NOT NULL, name BLOB NOT NULL, ino INTEGER NOT NULL,
        PRIMARY KEY(parent, name));
      CREATE INDEX dentries_by_parent ON dentries(parent);
      CREATE INDEX dentries_by_ino ON dentries(ino);
      CREATE TABLE xattrs(ino INTEGER NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL,
        PRIMARY KEY(ino, name)) WITHOUT ROWID;
      CREATE TABLE extents(ino INTEGER NOT NULL, idx INTEGER NOT NULL, slice BLOB NOT NULL,
        len INTEGER NOT NULL, PRIMARY KEY(ino, idx)) WITHOUT ROWID;
      INSERT INTO meta VALUES('schema_version', '1'), ('slice_size', '65536'),
        ('volume_id', 'vol-a');
      INSERT INTO inodes VALUES(1, 16877, 0, 0, 3, 0, 1, 1, 1, 1, 0, 1, NULL, NULL);
      INSERT INTO inodes VALUES(2, 16877, 0, 0, 2, 0, 1, 1, 1, 1, 0, 1, NULL, NULL);
      INSERT INTO inodes VALUES(3, 33188, 0, 0, 1, 3, 1, 1, 1, 1, 0, 1, X'616263', NULL);
      INSERT INTO dentries(rowid, parent, name, ino) VALUES(7, 1, CAST('dir' AS BLOB), 2);
      INSERT INTO dentries(rowid, parent, name, ino) VALUES(5, 1, CAST('file' AS BLOB), 3);
      INSERT INTO dentries(rowid, parent, name, ino) VALUES(9, 2, CAST('again' AS BLOB), 3);
    )sql";
    ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  auto listing = [](MetadataStore* m, uint64_t dir) {
    std::vector<std::tuple<uint64_t, std::string, uint64_t, uint32_t>> out;
    EXPECT_TRUE(m->ListDir(dir, 0, [&](const DirEntryRecord& e) {
      out.emplace_back(e.cookie, e.name, e.ino, e.mode);
      return true;
    }).ok());
    return out;
  };
  using Row = std::tuple<uint64_t, std::string, uint64_t, uint32_t>;
  const std::vector<Row> root{{5, "file", 3, S_IFREG}, {7, "dir", 2, S_IFDIR}};

  // Read-only: the file stays at schema 1 and reads the same.
  std::filesystem::copy_file(v1, dir_ / "v1ro.db");
  {
    auto o = Opts();
    o.path = dir_ / "v1ro.db";
    o.read_only = true;
    auto m = MetadataStore::Open(o);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(listing(m->get(), kRootIno), root);
    EXPECT_EQ(*(*m)->Lookup(2, "again"), 3u);
    EXPECT_EQ(*(*m)->ParentOf(2), kRootIno);
  }
  {
    sqlite3* db;
    ASSERT_EQ(sqlite3_open((dir_ / "v1ro.db").c_str(), &db), SQLITE_OK);
    sqlite3_stmt* st;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key='schema_version'", -1, &st,
                                 nullptr),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "1");
    sqlite3_finalize(st);
    sqlite3_close(db);
  }

  // Read-write: upgraded, same entries and cookies; new entries follow.
  auto o = Opts();
  o.path = v1;
  {
    auto m = MetadataStore::Open(o);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(listing(m->get(), kRootIno), root);
    EXPECT_EQ(*(*m)->Lookup(kRootIno, "file"), 3u);
    EXPECT_EQ(*(*m)->ParentOf(2), kRootIno);
    EXPECT_EQ(listing(m->get(), 2), (std::vector<Row>{{9, "again", 3, S_IFREG}}));
    ASSERT_TRUE((*m)->Begin().ok());
    ASSERT_TRUE((*m)->InsertDentry(kRootIno, "new", 2).ok());
    ASSERT_TRUE((*m)->Commit().ok());
  }
  auto m = MetadataStore::Open(o);  // once upgraded, opens as schema 2
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  auto after = listing(m->get(), kRootIno);
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[2], (Row{8, "new", 2, S_IFDIR}));
}

// The WAL is copied into the database every 8192 pages, not SQLite's
// default 1000: a few thousand pages of commits stay in the WAL.
TEST_F(MetadataTest, WalIsCheckpointedRarely) {
  const std::filesystem::path wal = dir_ / "metadata.db-wal";
  for (int i = 0; i < 800; ++i) {
    ASSERT_TRUE(m_->Begin().ok());
    std::string name = "d";
    name += std::to_string(i);
    InsertDir(m_.get(), name);
    ASSERT_TRUE(m_->Commit().ok());
  }
  // Each commit writes a few pages (4 KiB + a 24-byte frame header each).
  EXPECT_GT(std::filesystem::file_size(wal), 1500u * 4120u);
  EXPECT_LT(std::filesystem::file_size(wal), 8192u * 4120u);
  for (int i = 0; i < 800; ++i) {
    std::string name = "d";
    name += std::to_string(i);
    EXPECT_TRUE(m_->Lookup(kRootIno, name).ok());
  }
}

// The WAL's writes are gathered until the end of each commit: a transaction
// larger than the page cache (pages spill to the WAL and are read back) and
// than the gathering buffer reads back right and is on disk at commit; an
// open transaction is not.
TEST_F(MetadataTest, BigTransactionsReadBackAndReachTheDiskAtCommit) {
  constexpr int kFiles = 5000;  // 5000 x 4 KiB inline: more than the 16 MB page cache
  auto content = [](int i) {
    std::string s(4000, static_cast<char>('a' + i % 26));
    s += std::to_string(i);
    return s;
  };
  std::vector<uint64_t> inos;
  ASSERT_TRUE(m_->Begin().ok());
  for (int i = 0; i < kFiles; ++i) {
    InodeRecord r;
    r.mode = S_IFREG | 0644;
    r.nlink = 1;
    auto ino = m_->InsertInode(r);
    ASSERT_TRUE(ino.ok());
    Status set = m_->SetInline(*ino, content(i));
    ASSERT_TRUE(set.ok()) << i << " " << set.ToString();
    std::string name = "f";
    name += std::to_string(i);
    ASSERT_TRUE(m_->InsertDentry(kRootIno, name, *ino).ok());
    inos.push_back(*ino);
  }
  for (int i = 0; i < kFiles; i += 97) EXPECT_EQ(**m_->GetInline(inos[i]), content(i));
  {
    auto disk = OnDiskCopy(Opts(), dir_ / "open");
    ASSERT_NE(disk, nullptr);
    EXPECT_TRUE(disk->Lookup(kRootIno, "f0").status().Is(Code::kNotFound));
  }
  ASSERT_TRUE(m_->Commit().ok());
  auto disk = OnDiskCopy(Opts(), dir_ / "committed");
  ASSERT_NE(disk, nullptr);
  for (int i = 0; i < kFiles; i += 97) {
    std::string name = "f";
    name += std::to_string(i);
    auto ino = disk->Lookup(kRootIno, name);
    ASSERT_TRUE(ino.ok()) << name;
    EXPECT_EQ(**disk->GetInline(*ino), content(i));
  }
  // And a small commit right after is on disk too.
  ASSERT_TRUE(m_->Begin().ok());
  InsertDir(m_.get(), "small");
  ASSERT_TRUE(m_->Commit().ok());
  auto disk2 = OnDiskCopy(Opts(), dir_ / "small");
  ASSERT_NE(disk2, nullptr);
  EXPECT_TRUE(disk2->Lookup(kRootIno, "small").ok());
}

TEST_F(MetadataTest, RefusesOtherVolumeOrSliceSize) {
  m_.reset();
  auto o = Opts();
  o.volume_id = "vol-b";
  auto r = MetadataStore::Open(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("another volume"), std::string::npos);
  o = Opts();
  o.slice_size = 1 << 20;
  EXPECT_TRUE(MetadataStore::Open(o).status().Is(Code::kInvalidArgument));
}

TEST_F(MetadataTest, RefusesNewerSchemaAndGarbage) {
  m_.reset();
  {
    sqlite3* db;
    ASSERT_EQ(sqlite3_open((dir_ / "metadata.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value='99' WHERE key='schema_version'", nullptr,
                           nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  auto r = MetadataStore::Open(Opts());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().Is(Code::kCorruption));
  EXPECT_NE(r.status().message().find("schema version 99"), std::string::npos);

  auto o = Opts();
  o.path = dir_ / "garbage.db";
  std::ofstream(o.path) << std::string(8192, 'G');
  auto g = MetadataStore::Open(o);
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("garbage.db"), std::string::npos) << g.status().ToString();
}

}  // namespace
}  // namespace meshfs::fs
