// meshfs demo: three local peers, a volume, a mount.
#include "command.h"

namespace meshfs::cli {

void RegisterDemoCommands(CLI::App& app, CommandTable& table) {
  static std::string dir;
  auto* demo = app.add_subcommand("demo", "Start three local peers, a volume and a mount");
  demo->add_option("DIR", dir, "Working directory (default: a new temporary one)");
  table.Add(demo, [] { return NotImplemented("demo"); });
}

}  // namespace meshfs::cli
