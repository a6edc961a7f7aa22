// ReplicatingStore against real `meshfs node` processes on loopback: the
// SliceStore contract, 3 copies on 3 peers, reads surviving a killed peer and
// a peer serving damaged bytes, fast Unavailable when every peer is down.
//
// The nodes are started with fork/exec of the meshfs binary: $MESHFS_BIN, or
// ../cli/meshfs next to this test binary. Without it the tests skip.
#include "meshfs/net/replicating_store.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <sodium.h>

#include "meshfs/core/hex.h"
#include "meshfs/net/members.h"
#include "meshfs/net/placement.h"
#include "testing/slice_store_contract.h"
#include "testing/temp_dir.h"

namespace meshfs::net {
namespace {

namespace fs = std::filesystem;
using meshfs::testing::RandomBlob;
using meshfs::testing::TempDir;

std::string MeshfsBinary() {
  if (const char* env = std::getenv("MESHFS_BIN"); env && *env) return env;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  const fs::path cand = self.parent_path().parent_path() / "cli" / "meshfs";
  return fs::exists(cand) ? cand.string() : "";
}

uint16_t FreePort() {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  uint16_t port = 0;
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(s);
  return port;
}

// One `meshfs node` child process; stopped (by PID) when destroyed.
class NodeProcess {
 public:
  NodeProcess(const std::string& bin, const fs::path& dir, const std::string& join) {
    port_ = FreePort();
    addr_ = "127.0.0.1:" + std::to_string(port_);
    data_ = dir / ("node-" + std::to_string(port_));
    fs::create_directories(data_);
    const std::string log = (dir / ("node-" + std::to_string(port_) + ".log")).string();
    std::vector<std::string> args = {bin, "node", "--data", data_.string(), "--listen", addr_};
    if (!join.empty()) {
      args.push_back("--join");
      args.push_back(join);
    }
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      FILE* f = std::freopen(log.c_str(), "a", stderr);
      if (f) dup2(fileno(stderr), STDOUT_FILENO);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~NodeProcess() { Stop(SIGTERM); }

  // Waits until GET /v1/ping answers.
  bool WaitReady(PeerClient& client) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < end) {
      if (pid_ <= 0 || waitpid(pid_, nullptr, WNOHANG) != 0) return false;
      HttpRequest r;
      r.peer = *PeerAddress::Parse(addr_);
      r.path = "/v1/ping";
      r.timeout_ms = 1000;
      auto resp = client.Call(r);
      if (resp.ok() && resp->status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  void Stop(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    for (int i = 0; i < 100; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
  const std::string& addr() const { return addr_; }
  const fs::path& data() const { return data_; }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string addr_;
  fs::path data_;
};

constexpr char kOwner[] = "1111111111111111111111111111111111111111111111111111111111111111";

// Three nodes joined to the first, a PeerClient and a ReplicatingStore (R=3).
class Cluster {
 public:
  explicit Cluster(int nodes = 3, std::string owner = kOwner, std::string signing_key = "") {
    bin_ = MeshfsBinary();
    if (bin_.empty()) {
      skip_ = "meshfs binary not found (set MESHFS_BIN or build the meshfs target)";
      return;
    }
    for (int i = 0; i < nodes; ++i) {
      nodes_.push_back(std::make_unique<NodeProcess>(bin_, dir_.path(),
                                                     i == 0 ? "" : nodes_[0]->addr()));
      if (!nodes_.back()->WaitReady(client_)) {
        error_ = "node " + nodes_.back()->addr() + " did not start; see its log in " +
                 dir_.path().string();
        return;
      }
    }
    WaitMembers(nodes);
    ReplicatingOptions o;
    for (auto& n : nodes_) o.seeds.push_back(*PeerAddress::Parse(n->addr()));
    o.replicas = 3;
    o.owner = owner;
    o.signing_key = signing_key;
    o.get_timeout_ms = 3000;
    o.members_refresh_ms = 500;
    o.holders_db = dir_.path() / "holders.db";
    auto s = ReplicatingStore::Open(o, &client_);
    if (!s.ok()) {
      error_ = s.status().ToString();
      return;
    }
    store_ = std::move(*s);
  }

  // Waits until the first node lists `n` alive members.
  void WaitMembers(int n) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (std::chrono::steady_clock::now() < end) {
      HttpRequest r;
      r.peer = *PeerAddress::Parse(nodes_[0]->addr());
      r.path = "/v1/members";
      auto resp = client_.Call(r);
      if (resp.ok() && resp->status == 200) {
        auto members = ParseMembers(resp->body);
        if (members.ok()) {
          int alive = 0;
          for (auto& m : *members) alive += m.state == MemberState::kAlive;
          if (alive >= n) return;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  std::string skip_reason() {
    EXPECT_EQ(error_, "");
    return skip_.empty() ? error_ : skip_;
  }
  SliceStore* store() { return store_.get(); }
  ReplicatingStore& rs() { return *store_; }
  PeerClient& client() { return client_; }
  NodeProcess& node(size_t i) { return *nodes_[i]; }
  NodeProcess* node_by_addr(const std::string& a) {
    for (auto& n : nodes_) {
      if (n->addr() == a) return n.get();
    }
    return nullptr;
  }

 private:
  TempDir dir_;
  std::string bin_, skip_, error_;
  PeerClient client_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
  std::unique_ptr<ReplicatingStore> store_;
};

}  // namespace
}  // namespace meshfs::net

namespace meshfs::testing {
using ReplicatingMakers = ::testing::Types<meshfs::net::Cluster>;
INSTANTIATE_TYPED_TEST_SUITE_P(RealPeers, SliceStoreContract, ReplicatingMakers);
}  // namespace meshfs::testing

namespace meshfs::net {
namespace {

class ReplicatingStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<Cluster>();
    const std::string why = cluster_->skip_reason();
    if (!why.empty()) GTEST_SKIP() << why;
  }
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(ReplicatingStoreTest, ThreeCopiesOnThreePeersAndMembersKnown) {
  const std::string blob = RandomBlob(300'000, 1);
  const SliceId id = SliceId::ForBlob(blob);
  int copies = 0;
  ASSERT_TRUE(cluster_->rs().PutCounted(id, blob, &copies).ok());
  EXPECT_EQ(copies, 3);
  EXPECT_EQ(*cluster_->rs().CopiesOf(id), 3);
  for (size_t i = 0; i < 3; ++i) {
    auto has = cluster_->client().HasSlices(*PeerAddress::Parse(cluster_->node(i).addr()), {id});
    ASSERT_TRUE(has.ok()) << has.status().ToString();
    EXPECT_TRUE((*has)[0]) << "node " << i;
  }
  EXPECT_EQ(cluster_->rs().RecordedHolders(id).size(), 3u);
  auto peers = cluster_->rs().Peers();
  ASSERT_EQ(peers.size(), 3u);
  for (auto& p : peers) {
    EXPECT_FALSE(p.id.empty());
    EXPECT_EQ(p.state, "alive");
    EXPECT_TRUE(p.reachable) << p.addr;
    EXPECT_GT(p.rtt_ms, 0) << p.addr;
  }
}

TEST_F(ReplicatingStoreTest, KilledPeerReadsComeFromTheNextReplica) {
  const std::string blob = RandomBlob(200'000, 2);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(cluster_->rs().Put(id, blob).ok());
  // Kill the holder the selector would read from first.
  auto holders = cluster_->rs().RecordedHolders(id);
  auto order = cluster_->rs().selector().Order(holders);
  ASSERT_FALSE(order.empty());
  cluster_->node_by_addr(order[0])->Stop(SIGKILL);
  const auto start = std::chrono::steady_clock::now();
  auto got = cluster_->rs().Get(id);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == blob);
  EXPECT_LT(took, std::chrono::seconds(3));
  EXPECT_LT(cluster_->rs().selector().Score(order[0]).reputation, 1.0);
  // A put now finds only 2 live peers for 3 copies: Unavailable, 2 copies made.
  const std::string blob2 = RandomBlob(1000, 3);
  int copies = 0;
  Status s = cluster_->rs().PutCounted(SliceId::ForBlob(blob2), blob2, &copies);
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  EXPECT_EQ(copies, 2);
  EXPECT_NE(s.message().find("2 of 3"), std::string::npos) << s.message();
}

TEST_F(ReplicatingStoreTest, PeerServingDamagedBytesLosesReputation) {
  const std::string blob = RandomBlob(100'000, 4);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(cluster_->rs().Put(id, blob).ok());
  // Damage the copy of the peer that would be read first, and make sure it is
  // first: fake a very low RTT for it.
  auto holders = cluster_->rs().RecordedHolders(id);
  ASSERT_EQ(holders.size(), 3u);
  const std::string bad = holders[0];
  for (int i = 0; i < 20; ++i) cluster_->rs().selector().RecordRtt(bad, 0.01, true);
  ASSERT_EQ(cluster_->rs().selector().Order(holders)[0], bad);
  const double cost_before = cluster_->rs().selector().Score(bad).cost;
  int tampered = 0;
  for (auto& e : fs::recursive_directory_iterator(cluster_->node_by_addr(bad)->data())) {
    if (e.is_regular_file() && e.path().filename() == id.ToHex()) {
      std::ofstream f(e.path(), std::ios::binary | std::ios::trunc);
      f << RandomBlob(blob.size(), 99);
      tampered++;
    }
  }
  ASSERT_EQ(tampered, 1) << "slice file not found in " << cluster_->node_by_addr(bad)->data();
  auto got = cluster_->rs().Get(id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == blob);
  const PeerScore sc = cluster_->rs().selector().Score(bad);
  EXPECT_LT(sc.reputation, 0.6) << "failures " << sc.failures << " corrupt " << sc.corrupt;
  EXPECT_EQ(sc.corrupt, 1u);
  // Its cost rose by the corrupt penalty (x20).
  EXPECT_GT(sc.cost, 10 * cost_before);
}

// The client does not hash what it uploads; the peers do. A damaged blob is
// Corruption with no copy made, also when the first peer of the placement is
// down and the blob goes to the others one by one.
TEST_F(ReplicatingStoreTest, DamagedBlobIsRefusedByThePeers) {
  const std::string blob = RandomBlob(100'000, 7);
  const SliceId id = SliceId::ForBlob(blob);
  std::string damaged = blob;
  damaged[500] ^= 1;
  int copies = -1;
  Status s = cluster_->rs().PutCounted(id, damaged, &copies);
  EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
  EXPECT_EQ(copies, 0);

  std::vector<PlacementCandidate> cands;
  for (const auto& p : cluster_->rs().Peers()) cands.push_back({p.id, p.addr, p.capacity_bytes});
  ASSERT_EQ(cands.size(), 3u);
  const std::string first = cands[PlacementOrder(id, cands)[0]].addr;
  cluster_->node_by_addr(first)->Stop(SIGKILL);
  copies = -1;
  s = cluster_->rs().PutCounted(id, damaged, &copies);
  EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
  EXPECT_EQ(copies, 0);
  for (size_t i = 0; i < 3; ++i) {
    if (cluster_->node(i).addr() == first) continue;
    auto has = cluster_->client().HasSlices(*PeerAddress::Parse(cluster_->node(i).addr()), {id});
    ASSERT_TRUE(has.ok()) << has.status().ToString();
    EXPECT_FALSE((*has)[0]) << "node " << i;
  }
  // The good bytes still go through (to the two live peers).
  s = cluster_->rs().PutCounted(id, blob, &copies);
  EXPECT_EQ(copies, 2) << s.ToString();
}

TEST_F(ReplicatingStoreTest, StalledPeerIsHedgedAround) {
  const std::string blob = RandomBlob(50'000, 6);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(cluster_->rs().Put(id, blob).ok());
  auto holders = cluster_->rs().RecordedHolders(id);
  ASSERT_EQ(holders.size(), 3u);
  const std::string first = cluster_->rs().selector().Order(holders)[0];
  // SIGSTOP: the kernel still accepts connections, the peer never answers.
  NodeProcess* stalled = cluster_->node_by_addr(first);
  stalled->Signal(SIGSTOP);
  const auto start = std::chrono::steady_clock::now();
  auto got = cluster_->rs().Get(id);
  const auto took = std::chrono::steady_clock::now() - start;
  stalled->Signal(SIGCONT);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got == blob);
  // Far below the 3 s request timeout: the read was hedged to the next holder.
  EXPECT_LT(took, std::chrono::milliseconds(1500));
}

TEST_F(ReplicatingStoreTest, AllPeersDownIsUnavailableFast) {
  const std::string blob = RandomBlob(5000, 5);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(cluster_->rs().Put(id, blob).ok());
  for (size_t i = 0; i < 3; ++i) cluster_->node(i).Stop(SIGKILL);
  const auto start = std::chrono::steady_clock::now();
  auto got = cluster_->rs().Get(id);
  EXPECT_EQ(got.status().code(), Code::kUnavailable) << got.status().ToString();
  Status put = cluster_->rs().Put(SliceId::ForBlob("x"), "x");
  EXPECT_EQ(put.code(), Code::kUnavailable) << put.ToString();
  auto has = cluster_->rs().Contains(id);
  EXPECT_EQ(has.status().code(), Code::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(ReplicatingStoreRemove, SignedDeleteDropsEveryCopy) {
  unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
  crypto_sign_keypair(pk, sk);
  const std::string owner = HexEncode(std::string_view(reinterpret_cast<char*>(pk), sizeof(pk)));
  Cluster cluster(3, owner, std::string(reinterpret_cast<char*>(sk), sizeof(sk)));
  const std::string why = cluster.skip_reason();
  if (!why.empty()) GTEST_SKIP() << why;
  const std::string blob = RandomBlob(20'000, 7);
  const SliceId id = SliceId::ForBlob(blob);
  ASSERT_TRUE(cluster.rs().Put(id, blob).ok());
  ASSERT_EQ(*cluster.rs().CopiesOf(id), 3);
  Status s = cluster.rs().Remove(id);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(*cluster.rs().CopiesOf(id), 0);
  EXPECT_TRUE(cluster.rs().RecordedHolders(id).empty());
  EXPECT_EQ(cluster.rs().Get(id).status().code(), Code::kNotFound);
  // Removing again (nothing left anywhere) is not an error.
  EXPECT_TRUE(cluster.rs().Remove(id).ok());
}

TEST(ReplicatingStoreOptions, RejectsBadOptions) {
  PeerClient client;
  ReplicatingOptions o;
  EXPECT_EQ(ReplicatingStore::Open(o, &client).status().code(), Code::kInvalidArgument);
  o.seeds.push_back(*PeerAddress::Parse("127.0.0.1:1"));
  o.replicas = 0;
  EXPECT_EQ(ReplicatingStore::Open(o, &client).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace meshfs::net
