// meshfs sync, status, peers, cache clear.
#include "command.h"

namespace meshfs::cli {

void RegisterVolumeCommands(CLI::App& app, CommandTable& table) {
  static std::string target;
  static bool json = false;
  auto* sync = app.add_subcommand("sync", "Wait until everything is on R peers and published");
  sync->add_option("VOLUME|MOUNTPOINT", target)->required();
  table.Add(sync, [] { return NotImplemented("sync"); });

  auto* status = app.add_subcommand("status", "Show uploads, cache and peers of a volume");
  status->add_option("VOLUME|MOUNTPOINT", target)->required();
  status->add_flag("--json", json, "Machine-readable output");
  table.Add(status, [] { return NotImplemented("status"); });

  auto* peers = app.add_subcommand("peers", "List the peers a volume sees");
  peers->add_option("VOLUME|MOUNTPOINT", target)->required();
  peers->add_flag("--json", json, "Machine-readable output");
  table.Add(peers, [] { return NotImplemented("peers"); });

  auto* cache = app.add_subcommand("cache", "Manage the local block cache");
  cache->require_subcommand(1);
  auto* clear = cache->add_subcommand("clear", "Drop cached slices that are safely on peers");
  clear->add_option("VOLUME", target)->required();
  table.Add(clear, [] { return NotImplemented("cache clear"); });
}

}  // namespace meshfs::cli
