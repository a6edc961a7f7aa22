// ControlServer / ControlClient over a real Unix socket in a temp dir.
#include "meshfs/fs/control.h"

// The CLI's target resolution lives in the meshfs binary, not a library:
// compile it into this test.
#include "cli/control_client.cc"

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace meshfs::fs {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

class ControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/meshfs-control-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    sock_ = dir_ / "control.sock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<ControlServer> StartServer() {
    auto server = ControlServer::Start(sock_);
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    if (!server.ok()) return nullptr;
    auto s = std::move(server).value();
    s->RegisterHandler("echo", [](const json& req, const ControlServer::Progress&) -> Result<json> {
      return json{{"echo", req.value("text", std::string())}};
    });
    return s;
  }

  std::unique_ptr<ControlClient> Connect() {
    auto client = ControlClient::Connect(sock_);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  // A raw connection for sending bytes the client would never send.
  int RawConnect() {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, sock_.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    return fd;
  }

  // Reads one line (without '\n') from `fd`, waiting at most 5 s; "" on EOF.
  static std::string ReadLine(int fd) {
    std::string line;
    char c;
    while (true) {
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, 5000) != 1) return "<timeout>";
      if (::recv(fd, &c, 1, 0) != 1) return line;
      if (c == '\n') return line;
      line.push_back(c);
    }
  }

  static void SendAll(int fd, const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  std::filesystem::path dir_;
  std::filesystem::path sock_;
};

TEST_F(ControlTest, HandlerRepliesWithItsFields) {
  auto server = StartServer();
  auto client = Connect();
  ASSERT_TRUE(client);
  auto reply = client->Call({{"op", "echo"}, {"text", "hello"}});
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ((*reply)["ok"], true);
  EXPECT_EQ((*reply)["v"], 1);
  EXPECT_EQ((*reply)["echo"], "hello");
  // The same connection serves a second request.
  auto again = client->Call({{"op", "echo"}, {"text", "again"}});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)["echo"], "again");
}

TEST_F(ControlTest, SocketIsPrivateAndRemovedOnStop) {
  auto server = StartServer();
  struct stat st {};
  ASSERT_EQ(::lstat(sock_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, ::getuid());
  server->Stop();
  EXPECT_FALSE(std::filesystem::exists(sock_));
  server->Stop();  // idempotent
  auto client = ControlClient::Connect(sock_);
  ASSERT_FALSE(client.ok());
  EXPECT_TRUE(client.status().Is(Code::kNotFound)) << client.status().ToString();
}

TEST_F(ControlTest, ProgressLinesArriveInOrderBeforeTheFinalReply) {
  auto server = StartServer();
  server->RegisterHandler("count", [](const json& req, const ControlServer::Progress& progress)
                                       -> Result<json> {
    int n = req.value("n", 0);
    for (int i = 0; i < n; ++i) progress(json{{"i", i}});
    return json{{"done", n}};
  });
  auto client = Connect();
  std::vector<int> seen;
  auto reply = client->Call({{"op", "count"}, {"n", 5}},
                            [&](const json& p) { seen.push_back(p["i"].get<int>()); });
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ((*reply)["done"], 5);
}

TEST_F(ControlTest, HandlerErrorsAndExceptionsBecomeErrorReplies) {
  auto server = StartServer();
  server->RegisterHandler("fail", [](const json&, const ControlServer::Progress&) -> Result<json> {
    return Status::Unavailable("3 peers unreachable");
  });
  server->RegisterHandler("throw", [](const json&, const ControlServer::Progress&) -> Result<json> {
    throw std::runtime_error("boom");
  });
  auto client = Connect();
  auto r = client->Call({{"op", "fail"}});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().Is(Code::kUnavailable)) << r.status().ToString();
  EXPECT_EQ(r.status().message(), "3 peers unreachable");

  auto t = client->Call({{"op", "throw"}});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("boom"), std::string::npos);

  auto u = client->Call({{"op", "no-such-op"}});
  ASSERT_FALSE(u.ok());
  EXPECT_TRUE(u.status().Is(Code::kNotSupported));
  EXPECT_NE(u.status().message().find("no-such-op"), std::string::npos);

  // The connection still works after all of that.
  auto ok = client->Call({{"op", "echo"}, {"text", "x"}});
  EXPECT_TRUE(ok.ok());
}

TEST_F(ControlTest, GarbageGetsAnErrorAndTheServerKeepsServing) {
  auto server = StartServer();
  int fd = RawConnect();
  const char* bad[] = {
      "not json\n",
      "[1,2,3]\n",
      "{\"op\": \"echo\"}\n",            // no version
      "{\"v\": 2, \"op\": \"echo\"}\n",  // wrong version
      "{\"v\": 1}\n",                    // no op
      "{\"v\": 1, \"op\": 7}\n",
      "{\"v\": 1, \"op\": \"echo\", \xff\xfe}\n",
  };
  for (const char* line : bad) {
    SendAll(fd, line);
    json reply = json::parse(ReadLine(fd), nullptr, false);
    ASSERT_TRUE(reply.is_object()) << "no JSON reply to " << line;
    EXPECT_EQ(reply["ok"], false) << line;
    EXPECT_TRUE(reply["error"].is_string());
  }
  // Blank lines are ignored; a good request on the same connection works.
  SendAll(fd, "\n\r\n{\"v\":1,\"op\":\"echo\",\"text\":\"still here\"}\n");
  json reply = json::parse(ReadLine(fd), nullptr, false);
  ASSERT_TRUE(reply.is_object());
  EXPECT_EQ(reply["echo"], "still here");
  ::close(fd);
}

TEST_F(ControlTest, OversizedRequestIsRejectedAndOthersAreServed) {
  auto server = StartServer();
  int fd = RawConnect();
  std::string huge = "{\"v\":1,\"op\":\"echo\",\"text\":\"" + std::string(100 * 1024, 'a');
  SendAll(fd, huge);  // no newline: the server must not buffer without bound
  json reply = json::parse(ReadLine(fd), nullptr, false);
  ASSERT_TRUE(reply.is_object());
  EXPECT_EQ(reply["ok"], false);
  EXPECT_EQ(reply["code"], "too large");
  EXPECT_EQ(ReadLine(fd), "");  // and the connection is closed
  ::close(fd);

  // A complete line just over the limit is rejected too.
  fd = RawConnect();
  SendAll(fd, "{\"v\":1,\"op\":\"echo\",\"text\":\"" + std::string(kMaxRequestBytes, 'b') + "\"}\n");
  reply = json::parse(ReadLine(fd), nullptr, false);
  ASSERT_TRUE(reply.is_object());
  EXPECT_EQ(reply["ok"], false);
  ::close(fd);

  // The client refuses to send one.
  auto client = Connect();
  auto r = client->Call({{"op", "echo"}, {"text", std::string(kMaxRequestBytes, 'c')}});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().Is(Code::kTooLarge));
  // A request just under the limit is served.
  auto fine = client->Call({{"op", "echo"}, {"text", std::string(kMaxRequestBytes - 100, 'd')}});
  ASSERT_TRUE(fine.ok()) << fine.status().ToString();
  EXPECT_EQ((*fine)["echo"].get<std::string>().size(), kMaxRequestBytes - 100);
}

TEST_F(ControlTest, ConcurrentClientsAreServedAtOnce) {
  auto server = StartServer();
  constexpr int kClients = 6;
  std::mutex mu;
  std::condition_variable cv;
  int inside = 0;
  // Each handler waits until all clients are inside: passes only if the
  // server runs handlers of different clients at the same time.
  server->RegisterHandler("gather", [&](const json&, const ControlServer::Progress&) -> Result<json> {
    std::unique_lock<std::mutex> lock(mu);
    ++inside;
    cv.notify_all();
    if (!cv.wait_for(lock, std::chrono::seconds(5), [&] { return inside >= kClients; })) {
      return Status::TimedOut("handlers were serialized");
    }
    return json{{"inside", inside}};
  });
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&] {
      auto client = ControlClient::Connect(sock_);
      if (!client.ok()) return;
      auto r = (*client)->Call({{"op", "gather"}}, {}, 10000);
      if (r.ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kClients);
}

TEST_F(ControlTest, StaleSocketIsReplacedAndALiveOneIsNot) {
  // A socket file nobody listens on, as a killed daemon leaves behind.
  {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, sock_.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ::close(fd);
  }
  ASSERT_TRUE(std::filesystem::exists(sock_));
  auto stale = ControlClient::Connect(sock_);
  ASSERT_FALSE(stale.ok());
  EXPECT_TRUE(stale.status().Is(Code::kUnavailable)) << stale.status().ToString();

  auto server = StartServer();
  ASSERT_TRUE(server);
  auto client = Connect();
  ASSERT_TRUE(client);
  EXPECT_TRUE(client->Call({{"op", "echo"}}).ok());

  auto second = ControlServer::Start(sock_);
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(second.status().Is(Code::kAlreadyExists)) << second.status().ToString();
  // The first server is undisturbed.
  EXPECT_TRUE(client->Call({{"op", "echo"}}).ok());
}

TEST_F(ControlTest, RegularFileInTheWayIsNotDeleted) {
  { std::ofstream(sock_.native()) << "precious"; }
  auto server = ControlServer::Start(sock_);
  ASSERT_FALSE(server.ok());
  EXPECT_TRUE(std::filesystem::is_regular_file(sock_));
}

TEST_F(ControlTest, DeepVolumePathsWork) {
  // sun_path holds 107 bytes; volume directories can be deeper than that.
  std::filesystem::path deep = dir_;
  for (int i = 0; i < 4; ++i) deep /= std::string(40, static_cast<char>('a' + i));
  std::filesystem::create_directories(deep);
  sock_ = deep / "control.sock";
  ASSERT_GT(sock_.native().size(), 108u);
  auto server = StartServer();
  ASSERT_TRUE(server);
  EXPECT_TRUE(std::filesystem::exists(sock_));
  auto client = Connect();
  ASSERT_TRUE(client);
  EXPECT_TRUE(client->Call({{"op", "echo"}}).ok());
  // A second daemon is refused, and Stop removes the socket.
  EXPECT_TRUE(ControlServer::Start(sock_).status().Is(Code::kAlreadyExists));
  server->Stop();
  EXPECT_FALSE(std::filesystem::exists(sock_));
  // A missing directory is a clear error.
  auto missing = ControlServer::Start(deep / "nope" / std::string(120, 'z'));
  ASSERT_FALSE(missing.ok());
}

TEST_F(ControlTest, ClientCallTimesOut) {
  auto server = StartServer();
  std::atomic<bool> release{false};
  server->RegisterHandler("slow", [&](const json&, const ControlServer::Progress&) -> Result<json> {
    while (!release) std::this_thread::sleep_for(milliseconds(10));
    return json::object();
  });
  auto client = Connect();
  auto start = steady_clock::now();
  auto r = client->Call({{"op", "slow"}}, {}, 200);
  auto took = steady_clock::now() - start;
  release = true;
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().Is(Code::kTimedOut)) << r.status().ToString();
  EXPECT_LT(took, std::chrono::seconds(2));
}

TEST_F(ControlTest, StopReturnsWithIdleClientsConnected) {
  auto server = StartServer();
  auto c1 = Connect();
  auto c2 = Connect();
  ASSERT_TRUE(c1->Call({{"op", "echo"}}).ok());
  auto start = steady_clock::now();
  server->Stop();
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(2));
  auto r = c2->Call({{"op", "echo"}}, {}, 2000);
  EXPECT_FALSE(r.ok());
}

TEST_F(ControlTest, ClientOfAGoneDaemonGetsUnavailable) {
  auto server = StartServer();
  auto client = Connect();
  server.reset();
  auto r = client->Call({{"op", "echo"}}, {}, 2000);
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(r.status().Is(Code::kTimedOut)) << r.status().ToString();
}

// ---- cli/control_client: mount table parsing and target resolution ----------

TEST(ControlClientCli, ParsesMountInfoWithEscapesAndOptionalFields) {
  const std::string text =
      "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
      "87 22 0:50 / /home/ann/My\\040Docs rw,nosuid,nodev,relatime shared:45 master:3 - "
      "fuse.meshfs /home/ann/.config/meshfs/a\\040b rw,user_id=1000\n"
      "garbage line\n"
      "90 22 0:51 / /mnt/x rw - fuse\n"  // too short after '-': skipped
      "91 22 0:52 / /mnt/back\\134slash rw - fuse.meshfs /v rw";  // no final newline
  auto entries = cli::ParseMountInfo(text);
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].mountpoint, "/");
  EXPECT_EQ(entries[0].fstype, "ext4");
  EXPECT_EQ(entries[1].mountpoint, "/home/ann/My Docs");
  EXPECT_EQ(entries[1].fstype, "fuse.meshfs");
  EXPECT_EQ(entries[1].source, "/home/ann/.config/meshfs/a b");
  EXPECT_EQ(entries[1].device, "0:50");
  EXPECT_EQ(entries[2].mountpoint, "/mnt/back\\slash");
  EXPECT_TRUE(cli::ParseMountInfo("").empty());
  EXPECT_FALSE(cli::ReadMountTable().empty());  // the real one parses
}

TEST(ControlClientCli, HumanBytes) {
  EXPECT_EQ(cli::HumanBytes(0), "0 B");
  EXPECT_EQ(cli::HumanBytes(1023), "1023 B");
  EXPECT_EQ(cli::HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(cli::HumanBytes(3ull << 20), "3.0 MiB");
  EXPECT_EQ(cli::HumanBytes(5ull << 40), "5.0 TiB");
}

TEST_F(ControlTest, ResolvesAVolumeDirectoryAndItsMountRecord) {
  auto missing = cli::ResolveTarget((dir_ / "nothing").native());
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(missing.status().Is(Code::kNotFound));
  EXPECT_NE(missing.status().message().find("config.toml"), std::string::npos);

  std::filesystem::create_directories(dir_ / "vol");
  { std::ofstream(dir_ / "vol" / "config.toml") << "format_version = 1\n"; }
  { std::ofstream(dir_ / "vol" / "mount.json") << R"({"mountpoint": "/mnt/m/", "pid": 77})"; }
  // Relative and unnormalised spellings resolve to the same absolute volume.
  auto t = cli::ResolveTarget((dir_ / "vol" / "." / "").native());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->volume_dir, dir_ / "vol");
  EXPECT_EQ(t->mountpoint, "/mnt/m");
  EXPECT_EQ(t->pid, 77);
  EXPECT_FALSE(t->kernel_mounted);
  // No daemon: connecting says so.
  auto c = cli::ConnectDaemon(*t);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().Is(Code::kNotFound));
  // A bare name not under $XDG_CONFIG_HOME/meshfs falls back to ./NAME.
  auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir_);
  auto bare = cli::ResolveTarget("vol");
  std::filesystem::current_path(cwd);
  ASSERT_TRUE(bare.ok()) << bare.status().ToString();
  EXPECT_EQ(bare->volume_dir, dir_ / "vol");
  // A garbage mount.json is ignored, not fatal.
  { std::ofstream(dir_ / "vol" / "mount.json") << "{not json"; }
  auto g = cli::ResolveTarget((dir_ / "vol").native());
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->mountpoint.empty());
}

}  // namespace
}  // namespace meshfs::fs
