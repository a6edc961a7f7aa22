// Membership records and their JSON forms: the table served by
// GET /v1/members and the messages exchanged through POST /v1/gossip
// (docs/protocol.md, "Membership and coordinates").
//
// Parsers take untrusted network input: bodies over kMaxBodyBytes, tables
// over kMaxMembers entries, wrong types, unknown states, bad ids or
// addresses, non-finite or absurd coordinates are all InvalidArgument.
// They never throw.
//
// Thread-safety: pure functions over values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "meshfs/core/status.h"
#include "meshfs/net/vivaldi.h"

namespace meshfs::net {

inline constexpr size_t kMaxBodyBytes = 1 << 20;  // gossip and members bodies
inline constexpr size_t kMaxMembers = 10'000;     // entries in one table
inline constexpr size_t kMaxIdLength = 128;
inline constexpr size_t kMaxAddrLength = 300;
inline constexpr std::string_view kGossipMagic = "meshfs-gossip";
inline constexpr int kGossipVersion = 1;

enum class MemberState { kAlive, kSuspect, kDead };

// "alive", "suspect", "dead".
std::string_view StateName(MemberState state);
Result<MemberState> ParseState(std::string_view name);

struct Member {
  std::string id;            // node id: 1..kMaxIdLength of [A-Za-z0-9._:-]
  std::string addr;          // "HOST:PORT" the node listens on
  uint64_t incarnation = 0;  // generation: grows on every restart of the node
  uint64_t heartbeat = 0;    // grows every gossip interval within one incarnation
  MemberState state = MemberState::kAlive;
  Coordinate coord;
  uint64_t capacity_bytes = 0;
  uint64_t free_bytes = 0;
  // Local bookkeeping, never sent: when this node last saw (incarnation,
  // heartbeat) progress, on its own monotonic clock (microseconds).
  int64_t last_progress_micros = 0;
  // Only in GET /v1/members: milliseconds since the serving node saw
  // progress (-1 when unknown, e.g. parsed from gossip).
  int64_t age_ms = -1;

  // (incarnation, heartbeat) ordering: true if `this` is newer than `other`.
  bool NewerThan(const Member& other) const {
    return incarnation != other.incarnation ? incarnation > other.incarnation
                                            : heartbeat > other.heartbeat;
  }
};

// A gossip message, request and response alike:
//   {"magic":"meshfs-gossip","version":1,"sender":ID,"members":[MEMBER...]}
// The sender's own entry is among `members` (it carries its coordinate).
struct GossipMessage {
  std::string sender;
  std::vector<Member> members;
};

// True if `id` / `addr` are acceptable (see Member).
bool ValidMemberId(std::string_view id);
bool ValidMemberAddr(std::string_view addr);

// {"id","addr","state","incarnation","heartbeat","coord","capacity_bytes",
//  "free_bytes"} plus "age_ms" when age_ms >= 0.
nlohmann::json MemberToJson(const Member& m);
Result<Member> MemberFromJson(const nlohmann::json& j);

// The GET /v1/members body: a JSON list of members.
std::string EncodeMembers(const std::vector<Member>& members);
Result<std::vector<Member>> ParseMembers(std::string_view body);

std::string EncodeGossip(const GossipMessage& message);
// Also checks: ids are unique and the sender's entry is present.
Result<GossipMessage> ParseGossip(std::string_view body);

}  // namespace meshfs::net
