// PeerClient against closed ports and silent listeners (transport errors).
// Its behaviour against a real peer is covered in node_test.cc.
#include "meshfs/net/peer_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

namespace meshfs::net {
namespace {

// A listening socket that never accepts: connects succeed, nothing answers.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

uint16_t ClosedPort() {
  SilentListener l;
  return l.port();  // closed again when `l` goes away
}

TEST(PeerClient, ConnectionRefusedNamesThePeer) {
  PeerClient client;
  const uint16_t port = ClosedPort();
  HttpRequest r;
  r.peer = {"127.0.0.1", port};
  r.path = "/v1/ping";
  auto resp = client.Call(r);
  ASSERT_FALSE(resp.ok());
  EXPECT_TRUE(resp.status().Is(Code::kUnavailable)) << resp.status().ToString();
  EXPECT_NE(resp.status().message().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << resp.status().message();
  EXPECT_NE(resp.status().message().find("GET /v1/ping"), std::string::npos);
}

TEST(PeerClient, TimesOutOnSilentPeer) {
  PeerClient client;
  SilentListener silent;
  HttpRequest r;
  r.peer = {"127.0.0.1", silent.port()};
  r.path = "/v1/ping";
  r.timeout_ms = 300;
  std::atomic<int> observed{0};
  std::atomic<bool> observed_ok{true};
  client.SetRttObserver([&](const PeerAddress&, double, bool ok) {
    observed++;
    observed_ok = ok;
  });
  auto resp = client.Call(r);
  ASSERT_FALSE(resp.ok());
  EXPECT_TRUE(resp.status().Is(Code::kTimedOut)) << resp.status().ToString();
  EXPECT_EQ(observed.load(), 1);
  EXPECT_FALSE(observed_ok.load());
}

TEST(PeerClient, ManyInFlightAllComplete) {
  PeerClient client;
  const uint16_t port = ClosedPort();
  std::vector<std::future<Result<HttpResponse>>> futures;
  for (int i = 0; i < 50; ++i) {
    HttpRequest r;
    r.peer = {"127.0.0.1", port};
    r.path = "/v1/slices/has";
    r.method = "POST";
    r.body = "[]";
    futures.push_back(client.Send(r));
  }
  for (auto& f : futures) EXPECT_FALSE(f.get().ok());
}

TEST(PeerClient, RejectsMalformedRequests) {
  PeerClient client;
  HttpRequest r;
  r.peer = {"127.0.0.1", 1};
  r.path = "no-slash";
  EXPECT_TRUE(client.Call(r).status().Is(Code::kInvalidArgument));
  r.path = "/v1/ping";
  r.method = "BREW";
  EXPECT_TRUE(client.Call(r).status().Is(Code::kInvalidArgument));
  r.method = "GET";
  r.headers["X-Bad"] = "a\r\nInjected: yes";
  EXPECT_TRUE(client.Call(r).status().Is(Code::kInvalidArgument));
}

TEST(PeerClient, DestructorAbortsPendingTransfers) {
  SilentListener silent;
  std::future<Result<HttpResponse>> pending;
  {
    PeerClient client;
    HttpRequest r;
    r.peer = {"127.0.0.1", silent.port()};
    r.path = "/v1/ping";
    r.timeout_ms = 60000;
    pending = client.Send(r);
  }
  auto resp = pending.get();
  ASSERT_FALSE(resp.ok());
  EXPECT_TRUE(resp.status().Is(Code::kAborted)) << resp.status().ToString();
}

}  // namespace
}  // namespace meshfs::net
