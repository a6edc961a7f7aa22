// SqliteDb: a thin RAII wrapper over one sqlite3 connection with a cache of
// prepared statements, used by the block cache. Errors map to Status:
// SQLITE_FULL or ENOSPC -> NoSpace, damaged or foreign files -> Corruption,
// the rest -> IOError.
//
// Thread-safety: none. One connection is used by one thread at a time (the
// owner serialises access with its own mutex or a connection pool).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "meshfs/core/status.h"

namespace meshfs::cache {

class SqliteDb final {
 public:
  // Opens `path` read-write (creating it when `create`). Sets the busy
  // timeout; the caller sets journal mode and pragmas.
  static Result<std::unique_ptr<SqliteDb>> Open(const std::filesystem::path& path, bool create);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  sqlite3* handle() const { return db_; }

  // Runs one or more statements without results.
  Status Exec(const char* sql);
  // A prepared statement for `sql`, reset and with bindings cleared.
  // `sql` must be a string literal (the pointer is the cache key).
  Result<sqlite3_stmt*> Prepare(const char* sql);
  // Maps a SQLite result code to a Status naming `what`.
  Status Error(int rc, std::string_view what) const;
  // Rolls back an open transaction, if any (best effort).
  void RollbackIfOpen();

 private:
  explicit SqliteDb(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
  std::unordered_map<const char*, sqlite3_stmt*> stmts_;
};

// Resets a prepared statement when it goes out of scope.
class StmtReset final {
 public:
  explicit StmtReset(sqlite3_stmt* s) : s_(s) {}
  ~StmtReset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  StmtReset(const StmtReset&) = delete;
  StmtReset& operator=(const StmtReset&) = delete;

 private:
  sqlite3_stmt* s_;
};

}  // namespace meshfs::cache
