// meshfs init, meshfs key export|passwd.
#include "command.h"

namespace meshfs::cli {

void RegisterInitCommands(CLI::App& app, CommandTable& table) {
  auto* init = app.add_subcommand("init", "Create a new volume (keys and config)");
  static std::string volume, peers, passphrase_file, key_file, import_file, slice_size;
  static int replicas = 3;
  init->add_option("VOLUME", volume, "Volume directory or name")->required();
  init->add_option("--peers", peers, "Storage peers, HOST:PORT[,...]")->required();
  init->add_option("--replicas", replicas, "Copies of each slice (default 3)");
  init->add_option("--slice-size", slice_size, "Slice size, 64K..16M (default 1M)");
  init->add_option("--passphrase-file", passphrase_file, "Read the passphrase from a file");
  init->add_option("--key-file", key_file, "Store the key unwrapped in this file (mode 0600)");
  init->add_option("--import", import_file, "Import an exported volume key");
  table.Add(init, [] { return NotImplemented("init"); });

  auto* key = app.add_subcommand("key", "Export a volume key or change its passphrase");
  key->require_subcommand(1);
  auto* exp = key->add_subcommand("export", "Write the volume key to FILE (mode 0600)");
  static std::string exp_volume, exp_file;
  exp->add_option("VOLUME", exp_volume)->required();
  exp->add_option("FILE", exp_file)->required();
  table.Add(exp, [] { return NotImplemented("key export"); });
  auto* passwd = key->add_subcommand("passwd", "Change the passphrase of a volume");
  static std::string pw_volume;
  passwd->add_option("VOLUME", pw_volume)->required();
  table.Add(passwd, [] { return NotImplemented("key passwd"); });
}

}  // namespace meshfs::cli
