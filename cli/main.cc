// meshfs: the command-line entry point. Also runs as mount.meshfs (argv[0]).
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "command.h"
#include "meshfs/core/init.h"

namespace meshfs::cli {

int Fail(std::string_view what, const Status& status) {
  std::cerr << "meshfs: " << what << ": " << status.message() << "\n";
  return status.Is(Code::kInvalidArgument) ? kExitUsage : kExitFailure;
}

int NotImplemented(std::string_view name) {
  std::cerr << "meshfs: '" << name
            << "' is not available in this version of meshfs yet; see the README for what is\n";
  return kExitFailure;
}

namespace {

// mount.meshfs VOLUME MOUNTPOINT [-o OPTS] [-n] [-s] [-f] [-v]: the mount(8)
// helper convention, rewritten to `meshfs mount ...`.
std::vector<std::string> TranslateMountHelper(int argc, char** argv) {
  std::vector<std::string> args{"meshfs", "mount"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-n" || a == "-s" || a == "-v") continue;  // no mtab, sloppy, verbose
    args.push_back(a);
  }
  return args;
}

int Main(int argc, char** argv) {
  InitCrypto();
  std::vector<std::string> args;
  const char* base = std::strrchr(argv[0], '/');
  base = base ? base + 1 : argv[0];
  if (std::strcmp(base, "mount.meshfs") == 0) {
    args = TranslateMountHelper(argc, argv);
  } else {
    args.assign(argv, argv + argc);
  }

  CLI::App app{"meshfs: a decentralized, end-to-end encrypted filesystem", "meshfs"};
  app.set_version_flag("-V,--version", std::string("meshfs ") + MESHFS_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);
  CommandTable table;
  RegisterInitCommands(app, table);
  RegisterMountCommands(app, table);
  RegisterVolumeCommands(app, table);
  RegisterCheckCommands(app, table);
  RegisterNodeCommands(app, table);
  RegisterDemoCommands(app, table);

  std::vector<std::string> rev(args.rbegin(), args.rend() - 1);
  try {
    app.parse(rev);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "meshfs: " << e.what() << "\n";
    std::cerr << "Run 'meshfs --help' for usage.\n";
    return kExitUsage;
  }

  CLI::App* chosen = &app;
  while (!chosen->get_subcommands().empty()) chosen = chosen->get_subcommands().front();
  const RunFn* run = table.Find(chosen);
  if (run == nullptr) {
    std::cerr << "meshfs: '" << chosen->get_name() << "' needs a subcommand; see --help\n";
    return kExitUsage;
  }
  try {
    return (*run)();
  } catch (const std::exception& e) {
    std::cerr << "meshfs: " << chosen->get_name() << ": " << e.what() << "\n";
    return kExitFailure;
  }
}

}  // namespace
}  // namespace meshfs::cli

int main(int argc, char** argv) { return meshfs::cli::Main(argc, argv); }
