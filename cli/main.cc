// meshfs: the command-line entry point. Also runs as mount.meshfs (argv[0]).
#include <cstring>
#include <exception>
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

const CLI::App* FindSubcommand(const CLI::App& app, const std::string& name) {
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->check_name(name)) return sub;
  }
  return nullptr;
}

std::string CommandList(const CLI::App& app) {
  std::string out = "Commands:";
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    out += " " + sub->get_name();
  }
  return out + "\n";
}

// The deepest subcommand named on the command line (the app itself if none).
const CLI::App* DeepestChosen(const CLI::App& app) {
  const CLI::App* chosen = &app;
  while (true) {
    const auto subs = chosen->get_subcommands();
    if (subs.empty()) return chosen;
    chosen = subs.front();
  }
}

std::string CommandPath(const CLI::App* sub) {
  std::string path;
  for (const CLI::App* a = sub; a != nullptr; a = a->get_parent()) {
    path = a->get_name() + (path.empty() ? "" : " " + path);
  }
  return path;
}

// "meshfs: <problem>", the usage line of the command concerned, and where
// to read more. Exit code 2.
int UsageError(const CLI::App& app, const CLI::ParseError& e) {
  const CLI::App* sub = DeepestChosen(app);
  std::string what = e.what();
  if (what == "A subcommand is required") {
    what = sub == &app ? "a command is required" : "'" + CommandPath(sub) + "' needs a subcommand";
  }
  std::cerr << "meshfs: " << what << "\n";
  const std::string help = sub->help();
  const size_t at = help.find("Usage:");
  if (at != std::string::npos) {
    std::string usage = help.substr(at, help.find('\n', at) - at);
    const std::string name = "Usage: " + sub->get_name();
    if (usage.rfind(name, 0) == 0) usage = "Usage: " + CommandPath(sub) + usage.substr(name.size());
    std::cerr << usage << "\n";
  }
  if (sub == &app || !sub->get_subcommands([](const CLI::App*) { return true; }).empty()) {
    std::cerr << CommandList(*sub);
  }
  std::cerr << "Run '" << CommandPath(sub) << " --help' for usage.\n";
  return kExitUsage;
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

  // Unknown command words and top-level options get their own message (CLI11
  // would only say that a subcommand is required).
  const CLI::App* cur = &app;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (!a.empty() && a[0] == '-') {
      if (cur == &app && a != "-h" && a != "--help" && a != "-V" && a != "--version") {
        std::cerr << "meshfs: unknown option '" << a << "'\nUsage: meshfs [OPTIONS] COMMAND\n"
                  << CommandList(app) << "Run 'meshfs --help' for usage.\n";
        return kExitUsage;
      }
      break;
    }
    if (cur->get_subcommands([](const CLI::App*) { return true; }).empty()) break;
    const CLI::App* next = FindSubcommand(*cur, a);
    if (next == nullptr) {
      std::cerr << "meshfs: unknown command '"
                << (cur == &app ? "" : CommandPath(cur).substr(7) + " ") << a << "'\n"
                << CommandList(*cur) << "Run '" << CommandPath(cur) << " --help' for usage.\n";
      return kExitUsage;
    }
    cur = next;
  }
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
    return UsageError(app, e);
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
