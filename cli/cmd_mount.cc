// meshfs mount, meshfs umount (and mount.meshfs through main.cc).
#include "command.h"

namespace meshfs::cli {

void RegisterMountCommands(CLI::App& app, CommandTable& table) {
  auto* mount = app.add_subcommand("mount", "Mount a volume");
  static std::string volume, mountpoint;
  static std::vector<std::string> options;
  static bool foreground = false;
  mount->add_option("VOLUME", volume)->required();
  mount->add_option("MOUNTPOINT", mountpoint)->required();
  mount->add_flag("-f,--foreground", foreground, "Stay in the foreground");
  mount->add_option("-o", options, "Mount options, OPT[,OPT...]")->delimiter(',');
  table.Add(mount, [] { return NotImplemented("mount"); });
}

}  // namespace meshfs::cli
