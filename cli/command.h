// The subcommand table of the meshfs binary.
//
// Each cmd_*.cc file registers its subcommands with Register*Commands(app,
// table): it adds the CLI11 subcommand with its options and a Run function
// that returns the process exit code (kExit* below). main() parses the
// command line and calls the Run of the chosen subcommand. Not thread-safe:
// used only from main().
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "meshfs/core/status.h"

namespace meshfs::cli {

// Exit codes of the command-line contract.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // operational failure
inline constexpr int kExitUsage = 2;    // bad command line

using RunFn = std::function<int()>;

class CommandTable {
 public:
  // Registers `run` as the action of subcommand `sub` (owned by the app).
  void Add(CLI::App* sub, RunFn run) { runs_[sub] = std::move(run); }
  // The action for the deepest chosen subcommand, or nullptr.
  const RunFn* Find(CLI::App* sub) const {
    auto it = runs_.find(sub);
    return it == runs_.end() ? nullptr : &it->second;
  }

 private:
  std::map<CLI::App*, RunFn> runs_;
};

// Prints "meshfs: <what>: <status message>" to stderr and returns the exit
// code for `status` (1 for operational failures, 2 for usage errors).
int Fail(std::string_view what, const Status& status);

// For subcommands not built yet: says so on stderr and returns 1.
int NotImplemented(std::string_view name);

// One function per cmd_*.cc file.
void RegisterInitCommands(CLI::App& app, CommandTable& table);    // init, key
void RegisterNodeCommands(CLI::App& app, CommandTable& table);    // node
void RegisterMountCommands(CLI::App& app, CommandTable& table);   // mount, umount
void RegisterVolumeCommands(CLI::App& app, CommandTable& table);  // sync, status, peers, cache
void RegisterCheckCommands(CLI::App& app, CommandTable& table);   // check, gc, snapshots
void RegisterDemoCommands(CLI::App& app, CommandTable& table);    // demo

}  // namespace meshfs::cli
