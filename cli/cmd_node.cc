// meshfs node: the storage peer.
#include "command.h"

namespace meshfs::cli {

void RegisterNodeCommands(CLI::App& app, CommandTable& table) {
  auto* node = app.add_subcommand("node", "Run a storage peer in the foreground");
  static std::string data, listen, join, capacity;
  node->add_option("--data", data, "Directory for stored slices")->required();
  node->add_option("--listen", listen, "HOST:PORT to serve the peer protocol on")->required();
  node->add_option("--join", join, "Peers to join, HOST:PORT[,...]");
  node->add_option("--capacity", capacity, "Disk space to lend, e.g. 10G");
  table.Add(node, [] { return NotImplemented("node"); });
}

}  // namespace meshfs::cli
