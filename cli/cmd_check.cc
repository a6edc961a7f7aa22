// meshfs check, gc, snapshots.
#include "command.h"

namespace meshfs::cli {

void RegisterCheckCommands(CLI::App& app, CommandTable& table) {
  static std::string volume;
  static bool repair = false;
  auto* check = app.add_subcommand("check", "Verify that every slice is on its peers");
  check->add_option("VOLUME", volume)->required();
  check->add_flag("--repair", repair, "Re-replicate missing or damaged copies");
  table.Add(check, [] { return NotImplemented("check"); });

  auto* gc = app.add_subcommand("gc", "Remove slices no file or snapshot refers to");
  gc->add_option("VOLUME", volume)->required();
  table.Add(gc, [] { return NotImplemented("gc"); });

  auto* snaps = app.add_subcommand("snapshots", "List the published snapshots of a volume");
  snaps->add_option("VOLUME", volume)->required();
  table.Add(snaps, [] { return NotImplemented("snapshots"); });
}

}  // namespace meshfs::cli
