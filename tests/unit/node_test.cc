// In-process storage peers driven through PeerClient: the slice API, error
// mapping, pipeline replication, verification of what peers serve.
#include "meshfs/net/node.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "meshfs/core/root_record.h"
#include "meshfs/core/signed_request.h"
#include "meshfs/net/peer_client.h"
#include "testing/page_cache.h"

namespace meshfs::net {
namespace {

namespace fs = std::filesystem;

class NodeTest : public ::testing::Test {
 protected:
  void TearDown() override {
    nodes_.clear();
    for (const auto& d : dirs_) fs::remove_all(d);
  }

  Node* StartNode(uint64_t capacity = 0, uint64_t max_buffered = 1ull << 30) {
    char tmpl[] = "/tmp/meshfs-node-test-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    dirs_.push_back(tmpl);
    NodeOptions o;
    o.data_dir = tmpl;
    o.listen = {"127.0.0.1", 0};
    o.capacity_bytes = capacity;
    o.max_buffered_bytes = max_buffered;
    o.gossip.interval_ms = 200;
    auto n = Node::Start(o);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    if (!n.ok()) return nullptr;
    nodes_.push_back(std::move(*n));
    return nodes_.back().get();
  }

  static PeerAddress Addr(const Node* n) { return *PeerAddress::Parse(n->addr()); }

  static std::string Blob(size_t n, char seed) {
    std::string b(n, seed);
    for (size_t i = 0; i < n; i += 61) b[i] = static_cast<char>(i + seed);
    return b;
  }

  PeerClient client_;
  std::vector<std::string> dirs_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(NodeTest, PutGetHasThroughPeerClient) {
  Node* n = StartNode();
  ASSERT_NE(n, nullptr);
  EXPECT_NE(n->port(), 0);
  const std::string blob = Blob(1 << 20, 'a');
  const SliceId id = SliceId::ForBlob(blob);
  auto put = client_.PutSlice(Addr(n), id, blob, std::string(64, 'a'));
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->stored_on, std::vector<std::string>{n->addr()});
  EXPECT_TRUE(put->failed.empty());
  auto got = client_.GetSlice(Addr(n), id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, blob);
  const SliceId missing = SliceId::ForBlob("missing");
  auto has = client_.HasSlices(Addr(n), {id, missing, id});
  ASSERT_TRUE(has.ok()) << has.status().ToString();
  EXPECT_EQ(*has, (std::vector<bool>{true, false, true}));
  auto none = client_.HasSlices(Addr(n), {});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_TRUE(client_.GetSlice(Addr(n), missing).status().Is(Code::kNotFound));
}

// How many of this process's descriptors are open on the file at `path`
// (the node under test runs in this process).
size_t OpenDescriptorsOf(const std::string& path) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    std::error_code link_ec;
    if (std::filesystem::read_symlink(e.path(), link_ec) == path) ++n;
  }
  return n;
}

// A slice a peer served leaves its page cache, as a stored one does: the
// client caches what it reads, and the next GET reuses the memory.
TEST_F(NodeTest, ServedSliceLeavesThePageCache) {
  Node* n = StartNode();
  ASSERT_NE(n, nullptr);
  if (testing::OnTmpfs(dirs_.back())) GTEST_SKIP() << dirs_.back() << " is tmpfs";
  const std::string blob = Blob(1 << 20, 'r');
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(client_.PutSlice(Addr(n), id, blob, std::string(64, 'a')).ok());
  const std::string hex = id.ToHex();
  const std::string path = dirs_.back() + "/slices/" + hex.substr(0, 2) + "/" + hex;
  {
    // Read it into the page cache first, as a GET without the drop leaves it.
    std::ifstream in(path, std::ios::binary);
    std::string back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_EQ(back, blob);
  }
  const testing::Residency before = testing::ResidentPages(path);
  ASSERT_EQ(before.pages, blob.size() / static_cast<size_t>(::sysconf(_SC_PAGESIZE)));
  ASSERT_GT(before.cached, before.pages / 2);

  auto got = client_.GetSlice(Addr(n), id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, blob);
  // The pages are dropped once the client has read them and the kernel has
  // freed the socket's buffers: tried at each next request on the
  // connection for 2 s.
  testing::Residency after;
  for (int i = 0; i < 15; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(i == 0 ? 2 : 100));
    ASSERT_TRUE(client_.HasSlices(Addr(n), {id}).ok());
    after = testing::ResidentPages(path);
    if (after.cached < after.pages / 8) break;
  }
  EXPECT_LT(after.cached, after.pages / 8) << after.cached << " of " << after.pages << " cached";
  // The node closes the copy of the descriptor it kept for the drop, at the
  // latest at the first request after 2 s.
  size_t open = OpenDescriptorsOf(path);
  for (int i = 0; i < 30 && open > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_TRUE(client_.HasSlices(Addr(n), {id}).ok());
    open = OpenDescriptorsOf(path);
  }
  EXPECT_EQ(open, 0u) << "the node still holds " << path;
  // Still served, from the disk.
  auto again = client_.GetSlice(Addr(n), id);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, blob);
}

// A second node on a port in use fails to start with a clear error instead
// of sharing the port; once the first is gone the port is free at once.
TEST_F(NodeTest, PortInUseIsRefusedAndFreedOnStop) {
  Node* first = StartNode();
  ASSERT_NE(first, nullptr);
  char tmpl[] = "/tmp/meshfs-node-test-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  dirs_.push_back(tmpl);
  NodeOptions o;
  o.data_dir = tmpl;
  o.listen = {"127.0.0.1", Addr(first).port};
  auto second = Node::Start(o);
  ASSERT_FALSE(second.ok()) << "two nodes listen on port " << Addr(first).port;
  EXPECT_NE(second.status().ToString().find("address in use"), std::string::npos)
      << second.status().ToString();
  nodes_.clear();
  auto again = Node::Start(o);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  nodes_.push_back(std::move(*again));
}

TEST_F(NodeTest, HttpErrorsMapToStatusCodes) {
  Node* n = StartNode(64 * 1024);
  ASSERT_NE(n, nullptr);
  const std::string blob = Blob(1000, 'b');
  // Wrong address for the body.
  auto wrong = client_.PutSlice(Addr(n), SliceId::ForBlob("other"), blob, "");
  EXPECT_TRUE(wrong.status().Is(Code::kCorruption)) << wrong.status().ToString();
  EXPECT_NE(wrong.status().message().find(n->addr()), std::string::npos);
  // Full.
  const std::string big = Blob(100 * 1024, 'c');
  auto full = client_.PutSlice(Addr(n), SliceId::ForBlob(big), big, "");
  EXPECT_TRUE(full.status().Is(Code::kNoSpace)) << full.status().ToString();
  // Too large.
  const std::string huge(DiskStore::kDefaultMaxBlobBytes + 1, 'x');
  auto large = client_.PutSlice(Addr(n), SliceId::ForBlob(huge), huge, "");
  EXPECT_TRUE(large.status().Is(Code::kTooLarge)) << large.status().ToString();
  // Bad owner.
  auto owner = client_.PutSlice(Addr(n), SliceId::ForBlob(blob), blob, "nope");
  EXPECT_TRUE(owner.status().Is(Code::kInvalidArgument)) << owner.status().ToString();
}

TEST_F(NodeTest, GetSliceDetectsADamagedBlob) {
  Node* n = StartNode();
  ASSERT_NE(n, nullptr);
  const std::string blob = Blob(5000, 'd');
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(client_.PutSlice(Addr(n), id, blob, "").ok());
  const std::string hex = id.ToHex();
  {
    std::fstream f(dirs_[0] + "/slices/" + hex.substr(0, 2) + "/" + hex,
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('!');
  }
  auto got = client_.GetSlice(Addr(n), id);
  EXPECT_TRUE(got.status().Is(Code::kCorruption)) << got.status().ToString();
}

TEST_F(NodeTest, PipelineReplicationAndDeadPeer) {
  Node* a = StartNode();
  Node* b = StartNode();
  Node* c = StartNode();
  ASSERT_TRUE(a && b && c);
  const std::string blob = Blob(300'000, 'e');
  const SliceId id = SliceId::ForBlob(blob);
  auto put = client_.PutSlice(Addr(a), id, blob, "", {Addr(b), Addr(c)});
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->stored_on, (std::vector<std::string>{a->addr(), b->addr(), c->addr()}));
  for (Node* n : {a, b, c}) EXPECT_EQ(*client_.GetSlice(Addr(n), id), blob);

  const std::string blob2 = Blob(1000, 'f');
  const SliceId id2 = SliceId::ForBlob(blob2);
  b->Shutdown(1000);
  auto put2 = client_.PutSlice(Addr(a), id2, blob2, "", {Addr(b), Addr(c)});
  ASSERT_TRUE(put2.ok()) << put2.status().ToString();
  EXPECT_EQ(put2->stored_on, (std::vector<std::string>{a->addr(), c->addr()}));
  ASSERT_EQ(put2->failed.size(), 1u);
  EXPECT_EQ(put2->failed[0].rfind(b->addr(), 0), 0u) << put2->failed[0];
  EXPECT_TRUE(client_.GetSlice(Addr(c), id2).ok());
}

// The node hashes a PUT's body once, before storing or forwarding it: a
// body that does not match is refused by the first peer (nothing stored,
// nothing passed on), also for an address already stored there.
TEST_F(NodeTest, MismatchedBodyIsRefusedBeforeStoringOrForwarding) {
  Node* a = StartNode();
  Node* b = StartNode();
  ASSERT_TRUE(a && b);
  const std::string blob = Blob(200'000, 'g');
  const SliceId id = SliceId::ForBlob(blob);
  std::string damaged = blob;
  damaged[12345] ^= 1;

  auto bad = client_.PutSlice(Addr(a), id, damaged, std::string(64, 'a'), {Addr(b)});
  EXPECT_TRUE(bad.status().Is(Code::kCorruption)) << bad.status().ToString();
  for (Node* n : {a, b}) {
    auto has = client_.HasSlices(Addr(n), {id});
    ASSERT_TRUE(has.ok()) << has.status().ToString();
    EXPECT_FALSE((*has)[0]) << n->addr();
  }

  ASSERT_TRUE(client_.PutSlice(Addr(a), id, blob, "", {Addr(b)}).ok());
  for (const std::vector<PeerAddress>& forward :
       {std::vector<PeerAddress>{}, std::vector<PeerAddress>{Addr(b)}}) {
    auto again = client_.PutSlice(Addr(a), id, damaged, std::string(64, 'b'), forward);
    EXPECT_TRUE(again.status().Is(Code::kCorruption)) << again.status().ToString();
  }
  for (Node* n : {a, b}) EXPECT_EQ(*client_.GetSlice(Addr(n), id), blob);
}

TEST_F(NodeTest, RootsAndSignedDeleteViaHttp) {
  Node* n = StartNode();
  ASSERT_NE(n, nullptr);
  std::string pk(32, '\0'), sk(64, '\0');
  crypto_sign_keypair(reinterpret_cast<unsigned char*>(pk.data()),
                      reinterpret_cast<unsigned char*>(sk.data()));
  RootRecord rec;
  std::memcpy(rec.volume_id.data(), pk.data(), 32);
  rec.sequence = 1;
  rec.root = SliceId::ForBlob("root");
  const std::string enc = *rec.Sign(sk);
  HttpRequest put{Addr(n), "PUT", "/v1/roots/" + rec.VolumeHex(), enc, {}, 5000};
  auto r = client_.Call(put);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200) << r->body;
  r = client_.Call(put);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 409);
  auto get = client_.Call({Addr(n), "GET", "/v1/roots/" + rec.VolumeHex(), "", {}, 5000});
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get->body, enc);

  const std::string blob = Blob(100, 'g');
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(client_.PutSlice(Addr(n), id, blob, rec.VolumeHex()).ok());
  auto del = SignedRequest::Sign("DELETE", id.ToHex(), sk, std::time(nullptr));
  ASSERT_TRUE(del.ok());
  HttpRequest d{Addr(n), "DELETE", "/v1/slices/" + id.ToHex(), "", del->Headers(), 5000};
  auto resp = client_.Call(d);
  ASSERT_TRUE(resp.ok());
  EXPECT_EQ(resp->status, 200) << resp->body;
  EXPECT_TRUE(client_.GetSlice(Addr(n), id).status().Is(Code::kNotFound));
  resp = client_.Call(d);
  ASSERT_TRUE(resp.ok());
  EXPECT_EQ(resp->status, 403) << resp->body;
}

TEST_F(NodeTest, RefusesUploadsOverTheBufferedBytesCap) {
  Node* n = StartNode(0, 100 * 1024);
  ASSERT_NE(n, nullptr);
  const std::string big = Blob(200 * 1024, 'h');
  auto busy = client_.PutSlice(Addr(n), SliceId::ForBlob(big), big, "");
  EXPECT_TRUE(busy.status().Is(Code::kUnavailable)) << busy.status().ToString();
  const std::string small = Blob(50 * 1024, 'i');
  EXPECT_TRUE(client_.PutSlice(Addr(n), SliceId::ForBlob(small), small, "").ok());
  // The cap is released after each request.
  for (int i = 0; i < 5; ++i) {
    const std::string b = Blob(60 * 1024, static_cast<char>('j' + i));
    EXPECT_TRUE(client_.PutSlice(Addr(n), SliceId::ForBlob(b), b, "").ok()) << i;
  }
}

TEST_F(NodeTest, ManyConcurrentRequestsReuseConnections) {
  Node* n = StartNode();
  ASSERT_NE(n, nullptr);
  std::vector<std::future<Result<HttpResponse>>> futures;
  for (int i = 0; i < 200; ++i) {
    futures.push_back(client_.Send({Addr(n), "GET", "/v1/ping", "", {}, 10000}));
  }
  for (auto& f : futures) {
    auto r = f.get();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->headers["content-type"], "application/json");
  }
}

}  // namespace
}  // namespace meshfs::net
