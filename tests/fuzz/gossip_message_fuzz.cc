// Fuzz target: POST /v1/gossip bodies. Parses the message; a message that
// parses must re-encode to one that parses the same, and must merge into a
// live agent's table without breaking its invariants. Garbage must leave the
// agent's table byte-for-byte unchanged.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "meshfs/core/clock.h"
#include "meshfs/core/log.h"
#include "meshfs/net/gossip.h"
#include "meshfs/net/members.h"

using meshfs::net::GossipAgent;
using meshfs::net::GossipMessage;

namespace {

const bool kQuiet = [] {
  meshfs::SetLogLevel(meshfs::LogLevel::kError);
  return true;
}();

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto parsed = meshfs::net::ParseGossip(body);
  if (parsed.ok()) {
    const std::string again = meshfs::net::EncodeGossip(*parsed);
    auto reparsed = meshfs::net::ParseGossip(again);
    if (!reparsed.ok() || reparsed->members.size() != parsed->members.size() ||
        reparsed->sender != parsed->sender) {
      std::abort();
    }
  }
  // A fresh agent per input (with one peer already known), so inputs stay
  // independent and the table small. No transport: HandleGossip never sends.
  (void)kQuiet;
  meshfs::FakeClock clock;
  meshfs::net::GossipOptions options;
  options.seed = 1;
  GossipAgent agent(meshfs::net::SelfInfo{"fuzz-node", "127.0.0.1:7000", 100, 50, 1}, options,
                    static_cast<meshfs::net::GossipTransport*>(nullptr), &clock);
  meshfs::net::Member peer;
  peer.id = "node-1";
  peer.addr = "127.0.0.1:7001";
  peer.incarnation = 5;
  peer.heartbeat = 10;
  if (!agent.HandleGossip(meshfs::net::EncodeGossip(GossipMessage{"node-1", {peer}})).ok()) {
    std::abort();
  }
  const std::string before = agent.MembersJson();
  auto reply = agent.HandleGossip(body);
  if (reply.ok() != parsed.ok()) std::abort();
  if (!reply.ok() && agent.MembersJson() != before) std::abort();
  if (reply.ok()) {
    // The answer is a valid message from this node, listing itself.
    auto answer = meshfs::net::ParseGossip(*reply);
    if (!answer.ok() || answer->sender != "fuzz-node") std::abort();
    if (!meshfs::net::ParseMembers(agent.MembersJson()).ok()) std::abort();
  }
  return 0;
}
