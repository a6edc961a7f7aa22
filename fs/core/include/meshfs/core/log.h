// Logging: one line per event to stderr, "meshfs[<component>] <level>: msg".
// systemd-friendly (no timestamps unless MESHFS_LOG_TIME=1). Thread-safe:
// each call writes its line with a single write(2).
#pragma once

#include <string_view>

namespace meshfs {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Messages below `level` are dropped. Default: kInfo, or MESHFS_LOG=debug|info|warn|error.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
void Log(LogLevel level, std::string_view component, std::string_view message);

inline void LogDebug(std::string_view c, std::string_view m) { Log(LogLevel::kDebug, c, m); }
inline void LogInfo(std::string_view c, std::string_view m) { Log(LogLevel::kInfo, c, m); }
inline void LogWarn(std::string_view c, std::string_view m) { Log(LogLevel::kWarn, c, m); }
inline void LogError(std::string_view c, std::string_view m) { Log(LogLevel::kError, c, m); }

}  // namespace meshfs
