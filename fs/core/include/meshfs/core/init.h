// Process-wide library initialisation. Thread-safe, idempotent, cheap after
// the first call. Every binary calls it at start; tests call it in main.
#pragma once

namespace meshfs {

// Initialises libsodium; aborts the process if the CPU lacks what it needs.
void InitCrypto();

}  // namespace meshfs
