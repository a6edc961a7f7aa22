#include "passphrase.h"

#include <fcntl.h>
#include <sodium.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace meshfs::cli {
namespace {

constexpr size_t kMaxPassphrase = 4096;

Status NoPassphrase(PassphraseUse use) {
  const bool change = use == PassphraseUse::kChange;
  return Status::PermissionDenied(std::string("no ") + (change ? "new " : "") + "passphrase: set " +
                                  (change ? "MESHFS_NEW_PASSPHRASE, use --new-passphrase-file"
                                          : "MESHFS_PASSPHRASE, use --passphrase-file") +
                                  ", or run on a terminal");
}

void DropNewline(std::string& s) {
  if (!s.empty() && s.back() == '\n') s.pop_back();
  if (!s.empty() && s.back() == '\r') s.pop_back();
}

Result<std::string> ReadPassphraseFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("cannot read passphrase file " + path, errno);
  std::string s;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0 && s.size() <= kMaxPassphrase) {
    s.append(buf, static_cast<size_t>(n));
  }
  const int err = errno;
  ::close(fd);
  sodium_memzero(buf, sizeof(buf));
  if (n < 0) return Status::FromErrno("cannot read passphrase file " + path, err);
  if (s.size() > kMaxPassphrase) {
    return Status::InvalidArgument("passphrase file " + path + " is too large");
  }
  DropNewline(s);
  return s;
}

// Reads one line from the terminal on stdin with echo off. The prompt is
// shown only once echo is off (and earlier typeahead discarded), so nothing
// typed after it can be echoed or lost.
Result<std::string> Prompt(const std::string& prompt) {
  struct termios old_t;
  const bool have_t = ::tcgetattr(STDIN_FILENO, &old_t) == 0;
  if (have_t) {
    struct termios t = old_t;
    t.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    t.c_lflag |= ECHONL;
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
  }
  std::cerr << prompt << std::flush;
  std::string line;
  char c;
  ssize_t n;
  while ((n = ::read(STDIN_FILENO, &c, 1)) == 1 && c != '\n') {
    if (line.size() < kMaxPassphrase) line += c;
  }
  const int err = errno;
  if (have_t) ::tcsetattr(STDIN_FILENO, TCSANOW, &old_t);
  if (n < 0) return Status::FromErrno("reading the passphrase", err);
  if (n == 0 && line.empty()) return Status::Aborted("no passphrase entered");
  DropNewline(line);
  return line;
}

}  // namespace

Result<std::string> ObtainPassphrase(PassphraseUse use, const std::string& file,
                                     std::string_view what) {
  std::string pass;
  const char* env =
      std::getenv(use == PassphraseUse::kChange ? "MESHFS_NEW_PASSPHRASE" : "MESHFS_PASSPHRASE");
  if (!file.empty()) {
    MESHFS_ASSIGN_OR_RETURN(pass, ReadPassphraseFile(file));
  } else if (env != nullptr) {
    pass = env;
  } else if (::isatty(STDIN_FILENO)) {
    const std::string label = use == PassphraseUse::kChange ? "New passphrase" : "Passphrase";
    MESHFS_ASSIGN_OR_RETURN(pass, Prompt(label + " for " + std::string(what) + ": "));
    if (use != PassphraseUse::kUnlock) {
      MESHFS_ASSIGN_OR_RETURN(std::string again, Prompt(label + " again: "));
      const bool same = again == pass;
      sodium_memzero(again.data(), again.size());
      if (!same) return Status::PermissionDenied("the two passphrases differ; nothing changed");
    }
  } else {
    return NoPassphrase(use);
  }
  if (pass.empty()) {
    return Status::PermissionDenied(use == PassphraseUse::kUnlock
                                        ? "empty passphrase"
                                        : "empty passphrase; choose a non-empty one");
  }
  return pass;
}

Result<fs::VolumeKeys> UnlockVolume(const fs::Volume& volume, const std::string& passphrase_file) {
  MESHFS_ASSIGN_OR_RETURN(std::string bytes, volume.ReadKeyFile());
  auto wrapped = fs::KeyFileIsWrapped(bytes);
  sodium_memzero(bytes.data(), bytes.size());
  if (!wrapped.ok()) return wrapped.status().WithContext(volume.key_path().string());
  std::string pass;
  if (*wrapped) {
    MESHFS_ASSIGN_OR_RETURN(
        pass, ObtainPassphrase(PassphraseUse::kUnlock, passphrase_file, volume.dir().string()));
  }
  auto keys = volume.Unlock(pass);
  sodium_memzero(pass.data(), pass.size());
  return keys;
}

KdfCost KdfCostFromEnv() {
  const char* cost = std::getenv("MESHFS_KDF_COST");
  if (cost != nullptr && std::strcmp(cost, "min") == 0) {
    return {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};
  }
  return {crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE};
}

}  // namespace meshfs::cli
