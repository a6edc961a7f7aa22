// Member records and gossip messages: round trips and the defensive parsers.
#include "meshfs/net/members.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

namespace meshfs::net {
namespace {

using nlohmann::json;

Member SampleMember(std::string id = "node-a", std::string addr = "127.0.0.1:7001") {
  Member m;
  m.id = std::move(id);
  m.addr = std::move(addr);
  m.incarnation = 1'700'000'000'000'123;
  m.heartbeat = 42;
  m.state = MemberState::kSuspect;
  m.coord.vec = {1.5, -2.25};
  m.coord.height = 0.75;
  m.coord.error = 0.3;
  m.capacity_bytes = 10ULL << 30;
  m.free_bytes = 3ULL << 30;
  return m;
}

json SampleJson() { return MemberToJson(SampleMember()); }

std::string GossipWith(const json& members, const std::string& sender = "node-a") {
  return json{{"magic", "meshfs-gossip"}, {"version", 1}, {"sender", sender}, {"members", members}}
      .dump();
}

void ExpectInvalid(const Result<std::vector<Member>>& r, const std::string& what) {
  EXPECT_FALSE(r.ok()) << what;
  if (!r.ok()) {
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << what;
  }
}

TEST(Members, MemberRoundTrip) {
  const Member m = SampleMember();
  auto back = MemberFromJson(MemberToJson(m));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->id, m.id);
  EXPECT_EQ(back->addr, m.addr);
  EXPECT_EQ(back->incarnation, m.incarnation);
  EXPECT_EQ(back->heartbeat, m.heartbeat);
  EXPECT_EQ(back->state, MemberState::kSuspect);
  EXPECT_EQ(back->coord, m.coord);
  EXPECT_EQ(back->capacity_bytes, m.capacity_bytes);
  EXPECT_EQ(back->free_bytes, m.free_bytes);
  EXPECT_EQ(back->age_ms, -1);
}

TEST(Members, ListRoundTripWithAge) {
  std::vector<Member> list{SampleMember("a", "127.0.0.1:1"), SampleMember("b", "[::1]:2"),
                           SampleMember("c", "peer.example.org:7000")};
  list[1].age_ms = 1234;
  list[2].state = MemberState::kDead;
  const std::string body = EncodeMembers(list);
  EXPECT_EQ(json::parse(body).size(), 3u);
  auto back = ParseMembers(body);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 3u);
  EXPECT_EQ((*back)[1].addr, "[::1]:2");
  EXPECT_EQ((*back)[1].age_ms, 1234);
  EXPECT_EQ((*back)[2].state, MemberState::kDead);
  EXPECT_FALSE(json::parse(body)[0].contains("age_ms"));
}

TEST(Members, EmptyListIsValid) {
  auto r = ParseMembers("[]");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST(Members, GossipRoundTrip) {
  GossipMessage msg{"node-a", {SampleMember("node-a"), SampleMember("node-b", "10.0.0.2:7001")}};
  msg.members[0].state = MemberState::kAlive;
  const std::string body = EncodeGossip(msg);
  const json j = json::parse(body);
  EXPECT_EQ(j["magic"], "meshfs-gossip");
  EXPECT_EQ(j["version"], 1);
  auto back = ParseGossip(body);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->sender, "node-a");
  ASSERT_EQ(back->members.size(), 2u);
  EXPECT_EQ(back->members[1].addr, "10.0.0.2:7001");
}

TEST(Members, StateNames) {
  for (MemberState s : {MemberState::kAlive, MemberState::kSuspect, MemberState::kDead}) {
    auto back = ParseState(StateName(s));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, s);
  }
  EXPECT_FALSE(ParseState("Alive").ok());
  EXPECT_FALSE(ParseState("").ok());
}

TEST(Members, IdAndAddrValidation) {
  EXPECT_TRUE(ValidMemberId("3fa2b1c0d4e5"));
  EXPECT_TRUE(ValidMemberId("node-1.a_b:c"));
  EXPECT_FALSE(ValidMemberId(""));
  EXPECT_FALSE(ValidMemberId(std::string(kMaxIdLength + 1, 'a')));
  EXPECT_TRUE(ValidMemberId(std::string(kMaxIdLength, 'a')));
  EXPECT_FALSE(ValidMemberId("../etc"));
  EXPECT_FALSE(ValidMemberId("a b"));
  EXPECT_FALSE(ValidMemberId("a\nb"));
  EXPECT_FALSE(ValidMemberId("caf\xc3\xa9"));
  EXPECT_TRUE(ValidMemberAddr("127.0.0.1:7001"));
  EXPECT_TRUE(ValidMemberAddr("[::1]:7001"));
  EXPECT_FALSE(ValidMemberAddr("127.0.0.1"));
  EXPECT_FALSE(ValidMemberAddr("127.0.0.1:0"));
  EXPECT_FALSE(ValidMemberAddr("127.0.0.1:65536"));
  EXPECT_FALSE(ValidMemberAddr("a/b:80"));
  EXPECT_FALSE(ValidMemberAddr(""));
  EXPECT_FALSE(ValidMemberAddr(std::string(400, 'a') + ":80"));
}

TEST(Members, RejectsWrongTypes) {
  struct Case {
    const char* what;
    std::function<void(json&)> mutate;
  };
  const std::vector<Case> cases = {
      {"id missing", [](json& j) { j.erase("id"); }},
      {"id number", [](json& j) { j["id"] = 5; }},
      {"id with slash", [](json& j) { j["id"] = "a/b"; }},
      {"addr bad", [](json& j) { j["addr"] = "nohost"; }},
      {"addr number", [](json& j) { j["addr"] = 7001; }},
      {"state unknown", [](json& j) { j["state"] = "zombie"; }},
      {"state number", [](json& j) { j["state"] = 1; }},
      {"heartbeat string", [](json& j) { j["heartbeat"] = "42"; }},
      {"heartbeat negative", [](json& j) { j["heartbeat"] = -1; }},
      {"heartbeat float", [](json& j) { j["heartbeat"] = 4.5; }},
      {"heartbeat missing", [](json& j) { j.erase("heartbeat"); }},
      {"incarnation null", [](json& j) { j["incarnation"] = nullptr; }},
      {"capacity string", [](json& j) { j["capacity_bytes"] = "big"; }},
      {"free negative", [](json& j) { j["free_bytes"] = -5; }},
      {"coord missing", [](json& j) { j.erase("coord"); }},
      {"coord not object",
       [](json& j) {
         j["coord"] = json::array({1, 2});
       }},
      {"coord vec short", [](json& j) { j["coord"]["vec"] = json::array({1}); }},
      {"coord vec long",
       [](json& j) {
         j["coord"]["vec"] = json::array({1, 2, 3});
       }},
      {"coord vec string",
       [](json& j) {
         j["coord"]["vec"] = json::array({"1", 2});
       }},
      {"coord NaN", [](json& j) { j["coord"]["vec"][0] = std::nan(""); }},
      {"coord inf height",
       [](json& j) { j["coord"]["height"] = std::numeric_limits<double>::infinity(); }},
      {"coord huge", [](json& j) { j["coord"]["vec"][1] = 1e12; }},
      {"coord negative height", [](json& j) { j["coord"]["height"] = -1.0; }},
      {"coord negative error", [](json& j) { j["coord"]["error"] = -0.5; }},
      {"age negative", [](json& j) { j["age_ms"] = -3; }},
      {"not an object", [](json& j) { j = json::array(); }},
  };
  for (const auto& c : cases) {
    json j = SampleJson();
    c.mutate(j);
    EXPECT_FALSE(MemberFromJson(j).ok()) << c.what;
    // Through the text parsers too (NaN/inf become null in text: still rejected).
    ExpectInvalid(ParseMembers(json::array({j}).dump()), c.what);
  }
}

TEST(Members, RejectsBadBodies) {
  ExpectInvalid(ParseMembers(""), "empty");
  ExpectInvalid(ParseMembers("{}"), "object");
  ExpectInvalid(ParseMembers("[1,2"), "truncated");
  ExpectInvalid(ParseMembers("[] trailing"), "trailing garbage");
  ExpectInvalid(ParseMembers("[NaN]"), "NaN literal");
  ExpectInvalid(ParseMembers("\"\xff\xfe\""), "invalid UTF-8");
  ExpectInvalid(ParseMembers(std::string(100000, '[')), "deep nesting");
  ExpectInvalid(ParseMembers(std::string(5000, '[') + std::string(5000, ']')), "deep nesting");
  // 1e999 overflows to infinity: an absurd coordinate.
  const std::string text = SampleJson().dump();
  const auto pos = text.find("\"height\":");
  ASSERT_NE(pos, std::string::npos);
  const std::string inf = text.substr(0, pos) + "\"height\":1e999,\"h2\":" + text.substr(pos + 9);
  ExpectInvalid(ParseMembers("[" + inf + "]"), "1e999");
  // Duplicate ids.
  ExpectInvalid(ParseMembers(json::array({SampleJson(), SampleJson()}).dump()), "duplicate id");
}

TEST(Members, RejectsOversizedBodyAndTable) {
  // Just over 1 MiB of otherwise valid JSON.
  std::string big(kMaxBodyBytes, ' ');
  big += "[";
  big += SampleJson().dump();
  big += "]";
  ExpectInvalid(ParseMembers(big), "oversized body");
  // More than kMaxMembers entries (small enough to pass the size check).
  std::string many = "[";
  for (size_t i = 0; i <= kMaxMembers; ++i) many += (i ? ",0" : "0");
  many += "]";
  ASSERT_LE(many.size(), kMaxBodyBytes);
  auto r = ParseMembers(many);
  ExpectInvalid(r, "too many entries");
  EXPECT_NE(r.status().message().find("limit"), std::string::npos) << r.status().ToString();
}

TEST(Members, GossipRejectsGarbage) {
  const json members = json::array({SampleJson()});
  auto bad = [](const std::string& body, const char* what) {
    auto r = ParseGossip(body);
    EXPECT_FALSE(r.ok()) << what;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << what;
    }
  };
  EXPECT_TRUE(ParseGossip(GossipWith(members)).ok());
  bad("", "empty");
  bad("null", "null");
  bad("[]", "list");
  bad(GossipWith(members, "node-z"), "sender entry missing");
  bad(GossipWith(members, "bad id!"), "bad sender");
  bad(GossipWith(json::object()), "members not a list");
  bad(GossipWith(json::array({SampleJson(), SampleJson()})), "duplicate ids");
  json j = json::parse(GossipWith(members));
  j["magic"] = "meshfs-gossiq";
  bad(j.dump(), "wrong magic");
  j = json::parse(GossipWith(members));
  j["version"] = 2;
  bad(j.dump(), "future version");
  j["version"] = "1";
  bad(j.dump(), "version string");
  j.erase("version");
  bad(j.dump(), "no version");
  j = json::parse(GossipWith(members));
  j.erase("members");
  bad(j.dump(), "no members");
  std::string big = GossipWith(members);
  big.append(kMaxBodyBytes, ' ');
  bad(big, "oversized");
}

}  // namespace
}  // namespace meshfs::net
