// TempDir: a fresh directory under the system temp dir, removed with
// everything in it when the object is destroyed. For tests; not thread-safe.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace meshfs::testing {

class TempDir {
 public:
  // `prefix` names the directory, e.g. "meshfs-cache-test".
  explicit TempDir(std::string_view prefix = "meshfs-test") {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace meshfs::testing
