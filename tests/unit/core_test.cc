#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>

#include "meshfs/core/buffer_pool.h"
#include "meshfs/core/disk_reserve.h"
#include "meshfs/core/hex.h"
#include "meshfs/core/slice_id.h"
#include "meshfs/core/status.h"
#include "meshfs/fs/errno.h"
#include "testing/temp_dir.h"

namespace meshfs {
namespace {

TEST(BufferPool, HandsBackTheSameStorageWithoutRefilling) {
  BufferPool pool(2, 1024);
  std::string a = pool.Take(4096);
  ASSERT_EQ(a.size(), 4096u);
  a.assign(4096, 'x');
  const char* storage = a.data();
  pool.Give(std::move(a));
  EXPECT_EQ(pool.kept(), 1u);

  // Same storage, old bytes still there: no zero-fill, no new pages.
  std::string b = pool.Take(3000);
  EXPECT_EQ(b.data(), storage);
  EXPECT_EQ(b, std::string(3000, 'x'));
  EXPECT_EQ(pool.kept(), 0u);

  // Grown back past its last size: the new tail is filled, the rest kept.
  pool.Give(std::move(b));
  std::string c = pool.Take(4096);
  EXPECT_EQ(c.substr(0, 3000), std::string(3000, 'x'));
  EXPECT_EQ(c.substr(3000), std::string(1096, '\0'));
}

TEST(BufferPool, PrefersABufferLongEnoughAndStaysBounded) {
  BufferPool pool(2, 1024);
  pool.Give(std::string(2000, 'a'));
  pool.Give(std::string(8000, 'b'));
  pool.Give(std::string(9000, 'c'));  // full: let go
  pool.Give(std::string(100, 'd'));   // too small to keep
  EXPECT_EQ(pool.kept(), 2u);
  EXPECT_EQ(pool.Take(5000), std::string(5000, 'b'));
  EXPECT_EQ(pool.Take(1500), std::string(1500, 'a'));
  EXPECT_EQ(pool.kept(), 0u);
  EXPECT_EQ(pool.Take(10), std::string(10, '\0'));  // empty pool: a new buffer

  // None with room for the request: a new buffer, the kept one stays.
  pool.Give(std::string(2048, 'f'));
  const size_t kept_capacity = 2048;
  EXPECT_EQ(pool.Take(kept_capacity * 4), std::string(kept_capacity * 4, '\0'));
  EXPECT_EQ(pool.kept(), 1u);
  EXPECT_EQ(pool.Take(2048), std::string(2048, 'f'));

  // A small request leaves the kept buffers alone.
  pool.Give(std::string(4096, 'e'));
  EXPECT_EQ(pool.Take(100), std::string(100, '\0'));
  EXPECT_EQ(pool.kept(), 1u);
}

TEST(BufferPool, TakeEmptyReusesStorageForAppending) {
  BufferPool pool(2, 1024);
  std::string a(4096, 'x');
  const char* storage = a.data();
  pool.Give(std::move(a));
  std::string b = pool.TakeEmpty(3000);
  EXPECT_TRUE(b.empty());
  EXPECT_GE(b.capacity(), 3000u);
  EXPECT_EQ(b.data(), storage);
  b.append(3000, 'y');
  EXPECT_EQ(b.data(), storage);  // no regrowth
  EXPECT_EQ(pool.kept(), 0u);
  std::string c = pool.TakeEmpty(100000);  // none large enough: a new one
  EXPECT_TRUE(c.empty());
  EXPECT_GE(c.capacity(), 100000u);
}

TEST(BufferPool, SharedBufferReturnsWhenTheLastOwnerLetsGo) {
  BufferPool pool(4, 1024);
  std::string s = pool.Take(2048);
  const char* storage = s.data();
  std::shared_ptr<const std::string> one = pool.Share(std::move(s));
  std::shared_ptr<const std::string> two = one;
  EXPECT_EQ(one->data(), storage);
  one.reset();
  EXPECT_EQ(pool.kept(), 0u);
  two.reset();
  EXPECT_EQ(pool.kept(), 1u);
  EXPECT_EQ(pool.Take(2048).data(), storage);
}

TEST(Status, OkAndErrors) {
  EXPECT_TRUE(Status::OK().ok());
  Status s = Status::Corruption("slice 12 tag mismatch");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_EQ(s.ToString(), "corruption: slice 12 tag mismatch");
  EXPECT_EQ(s.WithContext("reading a.txt").message(), "reading a.txt: slice 12 tag mismatch");
  EXPECT_EQ(Status::FromErrno("open x", ENOSPC).code(), Code::kNoSpace);
}

TEST(Result, ValueAndError) {
  Result<int> r = 5;
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 5);
  Result<int> e = Status::NotFound("nope");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), Code::kNotFound);
  EXPECT_EQ(e.value_or(7), 7);
}

TEST(SliceId, HexRoundTripAndStrictParsing) {
  const SliceId id = SliceId::ForBlob("hello");
  auto parsed = SliceId::FromHex(id.ToHex());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, id);
  EXPECT_TRUE(id.Matches("hello"));
  EXPECT_FALSE(id.Matches("hellO"));
  std::string upper = id.ToHex();
  for (auto& c : upper) c = static_cast<char>(toupper(c));
  EXPECT_FALSE(SliceId::FromHex(upper).ok());
  EXPECT_FALSE(SliceId::FromHex(id.ToHex().substr(1)).ok());
  EXPECT_FALSE(SliceId::FromHex("../../../../etc/passwd" + std::string(42, 'a')).ok());
  EXPECT_FALSE(SliceId::FromHex(std::string(63, 'a') + "g").ok());
}

TEST(SliceId, KnownAnswerBlake2b256) {
  // BLAKE2b-256 of the empty string (RFC 7693 parameters, 32-byte digest).
  EXPECT_EQ(SliceId::ForBlob("").ToHex(),
            "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
}

TEST(Hex, DecodeRejectsBadInput) {
  EXPECT_FALSE(HexDecode("abc").ok());
  EXPECT_FALSE(HexDecode("zz").ok());
  EXPECT_EQ(*HexDecode("00ff"), std::string("\x00\xff", 2));
}

TEST(Errno, Mapping) {
  EXPECT_EQ(fs::ToErrno(Status::OK()), 0);
  EXPECT_EQ(fs::ToErrno(Status::NotFound("x")), ENOENT);
  EXPECT_EQ(fs::ToErrno(Status::Corruption("x")), EIO);
  EXPECT_EQ(fs::ToErrno(Status::NoSpace("x")), ENOSPC);
}

// The disk reserve: made at full size, refilled when cut short, not made
// without the room asked for, given back once.
TEST(DiskReserve, EnsureReleaseAndRoom) {
  meshfs::testing::TempDir dir;
  const auto path = dir.path() / "db.reserve";
  DiskReserve r(path, 64 << 10);
  r.Ensure(UINT64_MAX);  // never that much room
  EXPECT_FALSE(r.present());
  EXPECT_FALSE(std::filesystem::exists(path));
  r.Ensure();
  ASSERT_TRUE(r.present());
  EXPECT_EQ(std::filesystem::file_size(path), 64u << 10);
  std::filesystem::resize_file(path, 10);
  r.Ensure();
  EXPECT_EQ(std::filesystem::file_size(path), 64u << 10);
  EXPECT_TRUE(r.Release());
  EXPECT_FALSE(r.present());
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(r.Release());
}

}  // namespace
}  // namespace meshfs
