#include "sqlite_db.h"

#include <cerrno>

namespace meshfs::cache {

Result<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::filesystem::path& path, bool create) {
  sqlite3* db = nullptr;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  if (create) flags |= SQLITE_OPEN_CREATE;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    const int sys = db ? sqlite3_system_errno(db) : 0;
    sqlite3_close_v2(db);
    if (rc == SQLITE_CANTOPEN && sys == ENOENT) {
      return Status::NotFound("cache database " + path.string() + " does not exist");
    }
    if (rc == SQLITE_FULL || sys == ENOSPC) {
      return Status::NoSpace("cannot create cache database " + path.string() + ": disk full");
    }
    return Status::IOError("cannot open cache database " + path.string() + ": " + msg);
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, 10'000);
  return std::unique_ptr<SqliteDb>(new SqliteDb(db, path.string()));
}

SqliteDb::~SqliteDb() {
  for (auto& [sql, stmt] : stmts_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

Status SqliteDb::Error(int rc, std::string_view what) const {
  const int primary = rc & 0xff;
  const int sys = sqlite3_system_errno(db_);
  std::string where = "cache database " + path_ + ": " + std::string(what);
  if (primary == SQLITE_FULL || (primary == SQLITE_IOERR && sys == ENOSPC)) {
    return Status::NoSpace(where + ": disk full; free space or lower cache_size");
  }
  if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB) {
    return Status::Corruption(where + ": " + sqlite3_errstr(rc) +
                              " (the file is damaged or not a meshfs cache)");
  }
  return Status::IOError(where + ": " + sqlite3_errmsg(db_));
}

Status SqliteDb::Exec(const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    Status s = Error(rc, err ? err : "exec");
    sqlite3_free(err);
    return s;
  }
  return Status::OK();
}

Result<sqlite3_stmt*> SqliteDb::Prepare(const char* sql) {
  auto it = stmts_.find(sql);
  if (it != stmts_.end()) return it->second;
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return Error(rc, "prepare");
  stmts_.emplace(sql, stmt);
  return stmt;
}

void SqliteDb::RollbackIfOpen() {
  if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

}  // namespace meshfs::cache
