#include <gtest/gtest.h>

#include "meshfs/net/peer_client.h"

namespace meshfs::net {
namespace {

TEST(PeerAddress, ParsesHostAndPort) {
  auto a = PeerAddress::Parse("127.0.0.1:7001");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7001);
  EXPECT_EQ(a->ToString(), "127.0.0.1:7001");
  auto h = PeerAddress::Parse("peer-1.example.org:65535");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->host, "peer-1.example.org");
  EXPECT_EQ(h->port, 65535);
}

TEST(PeerAddress, ParsesBracketedV6) {
  auto a = PeerAddress::Parse("[::1]:8080");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 8080);
  EXPECT_EQ(a->ToString(), "[::1]:8080");
  auto round = PeerAddress::Parse(a->ToString());
  ASSERT_TRUE(round.ok());
  EXPECT_EQ(*round, *a);
}

TEST(PeerAddress, RejectsMalformed) {
  for (const char* bad :
       {"",         ":",           "host",     "host:",    ":80",         "host:0",  "host:65536",
        "host:80x", "host:-1",     "[::1]",    "[::1]80",  "[]:80",       "[::1:80", "a b:80",
        "h/x:80",   "../..:80",    "host:+80", "-host:80", "host:123456", "[zz]:80", "ho\nst:80",
        "[.]:8",    "[1.2.3.4]:80"}) {
    auto r = PeerAddress::Parse(bad);
    EXPECT_FALSE(r.ok()) << "accepted '" << bad << "'";
    if (!r.ok()) {
      EXPECT_TRUE(r.status().Is(Code::kInvalidArgument));
      EXPECT_NE(r.status().message().find("expected HOST:PORT"), std::string::npos);
    }
  }
}

TEST(PeerAddress, ParsesLists) {
  auto l = PeerAddress::ParseList("127.0.0.1:1, 127.0.0.1:2,[::1]:3");
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  ASSERT_EQ(l->size(), 3u);
  EXPECT_EQ((*l)[1].port, 2);
  EXPECT_EQ((*l)[2].host, "::1");
  auto empty = PeerAddress::ParseList("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  EXPECT_FALSE(PeerAddress::ParseList("a:1,,b:2").ok());
  EXPECT_FALSE(PeerAddress::ParseList("a:1,").ok());
  EXPECT_FALSE(PeerAddress::ParseList("a:1,b").ok());
}

}  // namespace
}  // namespace meshfs::net
