// meshfs node: the storage peer, in the foreground until SIGTERM/SIGINT.
#include <signal.h>

#include <charconv>
#include <cmath>
#include <iostream>

#include "command.h"
#include "meshfs/core/log.h"
#include "meshfs/net/node.h"

namespace meshfs::cli {
namespace {

// "1048576", "512K", "10M", "1.5G", "2T", "10GiB", "10GB" (powers of 1024).
Result<uint64_t> ParseSize(std::string_view text) {
  const auto bad = [&] {
    return Status::InvalidArgument("bad size '" + std::string(text) +
                                   "': expected a number with an optional K, M, G or T suffix");
  };
  size_t i = 0;
  while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
  if (i == 0) return bad();
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + i, value);
  if (ec != std::errc() || end != text.data() + i || !std::isfinite(value)) return bad();
  std::string suffix(text.substr(i));
  for (char& c : suffix) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (suffix.ends_with("IB"))
    suffix.resize(suffix.size() - 2);
  else if (suffix.size() == 2 && suffix.back() == 'B')
    suffix.pop_back();
  else if (suffix == "B")
    suffix.clear();
  double mult = 1;
  if (suffix == "K")
    mult = 1024.0;
  else if (suffix == "M")
    mult = 1024.0 * 1024;
  else if (suffix == "G")
    mult = 1024.0 * 1024 * 1024;
  else if (suffix == "T")
    mult = 1024.0 * 1024 * 1024 * 1024;
  else if (!suffix.empty())
    return bad();
  const double bytes = value * mult;
  if (bytes < 1 || bytes > 1.8e19) return bad();
  return static_cast<uint64_t>(bytes);
}

struct NodeArgs {
  std::string data, listen, join, capacity, advertise;
  int gossip_interval_ms = 1000;
  int fail_after_ms = 5000;
  int cleanup_after_ms = 30000;
};

int RunNode(const NodeArgs& a) {
  net::NodeOptions o;
  o.data_dir = a.data;
  auto listen = net::PeerAddress::Parse(a.listen);
  if (!listen.ok()) return Fail("--listen", listen.status());
  o.listen = *listen;
  if (!a.advertise.empty()) {
    auto adv = net::PeerAddress::Parse(a.advertise);
    if (!adv.ok()) return Fail("--advertise", adv.status());
    o.advertise = *adv;
  }
  auto join = net::PeerAddress::ParseList(a.join);
  if (!join.ok()) return Fail("--join", join.status());
  o.join = *join;
  if (!a.capacity.empty()) {
    auto cap = ParseSize(a.capacity);
    if (!cap.ok()) return Fail("--capacity", cap.status());
    o.capacity_bytes = *cap;
  }
  if (a.gossip_interval_ms <= 0 || a.fail_after_ms <= 0 || a.cleanup_after_ms <= 0) {
    return Fail("gossip timing", Status::InvalidArgument("intervals must be positive"));
  }
  o.gossip.interval_ms = a.gossip_interval_ms;
  o.gossip.fail_ms = a.fail_after_ms;
  o.gossip.cleanup_ms = a.cleanup_after_ms;
  o.version = MESHFS_VERSION;

  // Signals are taken synchronously by this thread; every thread started
  // below inherits the blocked mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto node = net::Node::Start(std::move(o));
  if (!node.ok()) return Fail("node", node.status());
  LogInfo("node",
          "node " + (*node)->id() + " serving on " + (*node)->addr() + " (data " + a.data + ")");
  int sig = 0;
  sigwait(&set, &sig);
  LogInfo("node", std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
                      ": finishing requests in flight");
  (*node)->Shutdown(10000);
  LogInfo("node", "stopped");
  return kExitOk;
}

}  // namespace

void RegisterNodeCommands(CLI::App& app, CommandTable& table) {
  auto* node = app.add_subcommand("node", "Run a storage peer in the foreground");
  static NodeArgs args;
  node->add_option("--data", args.data, "Directory for stored slices")->required();
  node->add_option("--listen", args.listen, "HOST:PORT to serve the peer protocol on")->required();
  node->add_option("--join", args.join, "Peers to join, HOST:PORT[,...]");
  node->add_option("--advertise", args.advertise,
                   "HOST:PORT other peers reach this node at (default: --listen)");
  node->add_option("--capacity", args.capacity,
                   "Disk space to lend, e.g. 10G (default: the free space of --data)");
  node->add_option("--gossip-interval", args.gossip_interval_ms,
                   "Milliseconds between gossip rounds (default 1000)");
  node->add_option("--fail-after", args.fail_after_ms,
                   "Milliseconds without heartbeat before a member is suspect (default 5000)");
  node->add_option("--cleanup-after", args.cleanup_after_ms,
                   "Milliseconds without heartbeat before a member is dropped (default 30000)");
  table.Add(node, [] { return RunNode(args); });
}

}  // namespace meshfs::cli
