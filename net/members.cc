// Member records and gossip messages as JSON, parsed defensively: these
// bytes come from the network (POST /v1/gossip) and from peers' answers to
// GET /v1/members.
#include "meshfs/net/members.h"

#include <algorithm>
#include <set>

#include "meshfs/net/peer_client.h"

namespace meshfs::net {
namespace {

using nlohmann::json;

// Deeper nesting than a gossip message needs is refused before parsing, so a
// body of a million '[' costs a scan, not a million nested values.
constexpr int kMaxDepth = 8;

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

Status Bad(std::string msg) { return Status::InvalidArgument(std::move(msg)); }

// Nesting depth of JSON text outside strings; -1 when it exceeds kMaxDepth.
int NestingDepth(std::string_view text) {
  int depth = 0;
  int max_depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return -1;
      max_depth = std::max(max_depth, depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

Result<json> ParseBody(std::string_view body, std::string_view what) {
  if (body.size() > kMaxBodyBytes) {
    return Bad(std::string(what) + ": body of " + std::to_string(body.size()) +
               " bytes exceeds the limit of " + std::to_string(kMaxBodyBytes));
  }
  if (NestingDepth(body) < 0) return Bad(std::string(what) + ": JSON nested too deeply");
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad(std::string(what) + ": not valid JSON");
  return j;
}

Result<uint64_t> GetUnsigned(const json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end()) return Bad(std::string("member: missing '") + key + "'");
  if (!it->is_number_unsigned()) {
    return Bad(std::string("member: '") + key + "' must be a non-negative integer");
  }
  return it->get<uint64_t>();
}

Result<std::string> GetString(const json& obj, const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end()) return Bad(std::string("member: missing '") + key + "'");
  if (!it->is_string()) return Bad(std::string("member: '") + key + "' must be a string");
  return it->get<std::string>();
}

Result<std::vector<Member>> MembersFromArray(const json& arr) {
  if (!arr.is_array()) return Bad("members: expected a JSON list");
  if (arr.size() > kMaxMembers) {
    return Bad("members: " + std::to_string(arr.size()) + " entries exceed the limit of " +
               std::to_string(kMaxMembers));
  }
  std::vector<Member> out;
  out.reserve(arr.size());
  std::set<std::string, std::less<>> seen;
  for (const auto& entry : arr) {
    auto m = MemberFromJson(entry);
    if (!m.ok()) return m.status();
    if (!seen.insert(m->id).second) return Bad("members: duplicate id '" + m->id + "'");
    out.push_back(std::move(m).value());
  }
  return out;
}

}  // namespace

std::string_view StateName(MemberState state) {
  switch (state) {
    case MemberState::kAlive:
      return "alive";
    case MemberState::kSuspect:
      return "suspect";
    case MemberState::kDead:
      return "dead";
  }
  return "dead";
}

Result<MemberState> ParseState(std::string_view name) {
  if (name == "alive") return MemberState::kAlive;
  if (name == "suspect") return MemberState::kSuspect;
  if (name == "dead") return MemberState::kDead;
  return Bad("member: unknown state (expected alive, suspect or dead)");
}

bool ValidMemberId(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength) return false;
  for (char c : id) {
    if (!IsIdChar(c)) return false;
  }
  return true;
}

bool ValidMemberAddr(std::string_view addr) {
  if (addr.empty() || addr.size() > kMaxAddrLength) return false;
  return PeerAddress::Parse(addr).ok();
}

json MemberToJson(const Member& m) {
  json j{{"id", m.id},
         {"addr", m.addr},
         {"state", std::string(StateName(m.state))},
         {"incarnation", m.incarnation},
         {"heartbeat", m.heartbeat},
         {"coord", m.coord.ToJson()},
         {"capacity_bytes", m.capacity_bytes},
         {"free_bytes", m.free_bytes}};
  if (m.age_ms >= 0) j["age_ms"] = m.age_ms;
  return j;
}

Result<Member> MemberFromJson(const json& j) {
  if (!j.is_object()) return Bad("member: not a JSON object");
  Member m;
  MESHFS_ASSIGN_OR_RETURN(m.id, GetString(j, "id"));
  if (!ValidMemberId(m.id)) return Bad("member: invalid id");
  MESHFS_ASSIGN_OR_RETURN(m.addr, GetString(j, "addr"));
  if (!ValidMemberAddr(m.addr)) return Bad("member '" + m.id + "': invalid addr");
  MESHFS_ASSIGN_OR_RETURN(std::string state, GetString(j, "state"));
  MESHFS_ASSIGN_OR_RETURN(m.state, ParseState(state));
  MESHFS_ASSIGN_OR_RETURN(m.incarnation, GetUnsigned(j, "incarnation"));
  MESHFS_ASSIGN_OR_RETURN(m.heartbeat, GetUnsigned(j, "heartbeat"));
  MESHFS_ASSIGN_OR_RETURN(m.capacity_bytes, GetUnsigned(j, "capacity_bytes"));
  MESHFS_ASSIGN_OR_RETURN(m.free_bytes, GetUnsigned(j, "free_bytes"));
  const auto coord = j.find("coord");
  if (coord == j.end()) return Bad("member '" + m.id + "': missing 'coord'");
  auto c = Coordinate::FromJson(*coord);
  if (!c.ok()) return c.status().WithContext("member '" + m.id + "'");
  m.coord = *c;
  const auto age = j.find("age_ms");
  if (age != j.end()) {
    if (!age->is_number_unsigned() || age->get<uint64_t>() > (1ULL << 52)) {
      return Bad("member '" + m.id + "': 'age_ms' must be a non-negative integer");
    }
    m.age_ms = static_cast<int64_t>(age->get<uint64_t>());
  }
  return m;
}

std::string EncodeMembers(const std::vector<Member>& members) {
  json arr = json::array();
  for (const auto& m : members) arr.push_back(MemberToJson(m));
  return arr.dump();
}

Result<std::vector<Member>> ParseMembers(std::string_view body) {
  try {
    MESHFS_ASSIGN_OR_RETURN(json j, ParseBody(body, "members"));
    return MembersFromArray(j);
  } catch (const std::exception& e) {
    return Bad(std::string("members: ") + e.what());
  }
}

std::string EncodeGossip(const GossipMessage& message) {
  json arr = json::array();
  for (const auto& m : message.members) arr.push_back(MemberToJson(m));
  json j{{"magic", std::string(kGossipMagic)},
         {"version", kGossipVersion},
         {"sender", message.sender},
         {"members", std::move(arr)}};
  return j.dump();
}

Result<GossipMessage> ParseGossip(std::string_view body) {
  try {
    MESHFS_ASSIGN_OR_RETURN(json j, ParseBody(body, "gossip"));
    if (!j.is_object()) return Bad("gossip: not a JSON object");
    const auto magic = j.find("magic");
    if (magic == j.end() || !magic->is_string() || magic->get<std::string>() != kGossipMagic) {
      return Bad("gossip: missing or wrong magic (expected \"meshfs-gossip\")");
    }
    const auto version = j.find("version");
    if (version == j.end() || !version->is_number_unsigned()) {
      return Bad("gossip: missing version");
    }
    if (version->get<uint64_t>() != static_cast<uint64_t>(kGossipVersion)) {
      return Bad("gossip: unsupported version " + std::to_string(version->get<uint64_t>()));
    }
    const auto sender = j.find("sender");
    if (sender == j.end() || !sender->is_string() ||
        !ValidMemberId(sender->get_ref<const std::string&>())) {
      return Bad("gossip: missing or invalid sender");
    }
    const auto members = j.find("members");
    if (members == j.end()) return Bad("gossip: missing members");
    GossipMessage out;
    out.sender = sender->get<std::string>();
    MESHFS_ASSIGN_OR_RETURN(out.members, MembersFromArray(*members));
    bool has_sender = false;
    for (const auto& m : out.members) has_sender = has_sender || m.id == out.sender;
    if (!has_sender) return Bad("gossip: the sender's own entry is missing");
    return out;
  } catch (const std::exception& e) {
    return Bad(std::string("gossip: ") + e.what());
  }
}

}  // namespace meshfs::net
