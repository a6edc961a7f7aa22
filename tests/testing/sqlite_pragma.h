// Reading a SQLite database's settings and counters (PRAGMA) from a test,
// through a connection of its own: it sees what the code under test has
// committed.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>

namespace meshfs::testing {

// The integer value of `PRAGMA <name>` in the database at `path`, opened
// read-only; -1 if the file cannot be opened or the pragma read.
inline int64_t IntPragma(const std::string& path, const std::string& name) {
  sqlite3* db = nullptr;
  int64_t v = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* s = nullptr;
    const std::string sql = "PRAGMA " + name;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
      v = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
  }
  sqlite3_close(db);
  return v;
}

}  // namespace meshfs::testing
