// Passphrases for the command line: where they come from, and unlocking a
// volume with one. Used by init, key, mount and sync.
//
// Sources, first that applies: a file named on the command line
// (--passphrase-file / --new-passphrase-file), the environment
// (MESHFS_PASSPHRASE / MESHFS_NEW_PASSPHRASE), a no-echo prompt when stdin
// is a terminal. Without any of them: a clear error (exit 1), never a hang.
//
// Thread-safety: not thread-safe (reads the terminal); call from main().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "meshfs/core/status.h"
#include "meshfs/fs/keys.h"
#include "meshfs/fs/volume.h"

namespace meshfs::cli {

enum class PassphraseUse {
  kUnlock,  // an existing passphrase: asked once
  kCreate,  // a new passphrase (init): asked twice on a terminal
  kChange,  // the new passphrase of `key passwd`: MESHFS_NEW_PASSPHRASE, asked twice
};

// Returns the passphrase for `use`. `file` (may be empty) is the path given
// on the command line; a trailing newline in it is dropped. `what` names the
// volume in the prompt. InvalidArgument never: a missing passphrase is an
// operational failure (PermissionDenied), so it exits 1.
Result<std::string> ObtainPassphrase(PassphraseUse use, const std::string& file,
                                     std::string_view what);

// Reads the volume's key file; when it is wrapped, obtains the passphrase
// (kUnlock, from `passphrase_file` or as above) and unwraps it. Errors say
// "wrong passphrase", "key file is damaged: ...", or what else failed.
Result<fs::VolumeKeys> UnlockVolume(const fs::Volume& volume, const std::string& passphrase_file);

// Argon2id cost for new key files: libsodium's INTERACTIVE limits, or its
// MIN limits when MESHFS_KDF_COST=min (for tests only: fast but weak).
struct KdfCost {
  uint64_t opslimit;
  size_t memlimit;
};
KdfCost KdfCostFromEnv();

}  // namespace meshfs::cli
