// Status and Result<T>: the one error type of meshfs.
//
// A Status is either OK (cheap: no allocation) or carries a Code and a
// one-line message that says what failed. Result<T> holds a value or a
// non-OK Status. Both are [[nodiscard]]: errors never pass silently.
// Errors are mapped to errno in one place at the FUSE boundary
// (fs/include/meshfs/fs/errno.h) and to exit codes in one place in cli/.
//
// Thread-safety: values; safe to copy between threads, not to share mutably.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace meshfs {

enum class Code {
  kOk = 0,
  kNotFound,          // the named thing does not exist
  kCorruption,        // stored or received bytes fail verification
  kInvalidArgument,   // the caller asked for something malformed
  kIOError,           // the OS or a device failed
  kNoSpace,           // a disk, cache or peer is full
  kUnavailable,       // a peer or service cannot be reached now; retry may work
  kPermissionDenied,  // wrong key, wrong passphrase, bad signature, mode bits
  kAlreadyExists,
  kTimedOut,
  kNotSupported,
  kTooLarge,
  kAborted,           // shutting down or cancelled
};

// Short lowercase name of a code, e.g. "corruption".
std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  static Status OK() { return Status(); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status InvalidArgument(std::string msg) {
    return Status(Code::kInvalidArgument, std::move(msg));
  }
  static Status IOError(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  // IOError from errno: "<what>: <strerror(err)>".
  static Status FromErrno(std::string_view what, int err);
  static Status NoSpace(std::string msg) { return Status(Code::kNoSpace, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  static Status PermissionDenied(std::string msg) {
    return Status(Code::kPermissionDenied, std::move(msg));
  }
  static Status AlreadyExists(std::string msg) {
    return Status(Code::kAlreadyExists, std::move(msg));
  }
  static Status TimedOut(std::string msg) { return Status(Code::kTimedOut, std::move(msg)); }
  static Status NotSupported(std::string msg) { return Status(Code::kNotSupported, std::move(msg)); }
  static Status TooLarge(std::string msg) { return Status(Code::kTooLarge, std::move(msg)); }
  static Status Aborted(std::string msg) { return Status(Code::kAborted, std::move(msg)); }

  Status(Code code, std::string msg) : code_(code), msg_(std::move(msg)) {}

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }
  bool Is(Code c) const { return code_ == c; }

  // "ok" or "<code name>: <message>".
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>".
  Status WithContext(std::string_view context) const;

 private:
  Code code_ = Code::kOk;
  std::string msg_;
};

// Holds a T or an error Status. REQUIRES: a Result built from a Status is
// never built from an OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok());
    if (status_.ok()) status_ = Status(Code::kAborted, "Result built from OK status");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  T value_or(T fallback) const& { return ok() ? *value_ : std::move(fallback); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace meshfs

#define MESHFS_CONCAT_INNER_(a, b) a##b
#define MESHFS_CONCAT_(a, b) MESHFS_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (a Status) is not OK.
#define MESHFS_RETURN_IF_ERROR(expr)            \
  do {                                          \
    ::meshfs::Status _st = (expr);              \
    if (!_st.ok()) return _st;                  \
  } while (0)

// `lhs = value of expr` (a Result<T>), or returns its Status.
#define MESHFS_ASSIGN_OR_RETURN(lhs, expr)                              \
  auto MESHFS_CONCAT_(_res_, __LINE__) = (expr);                        \
  if (!MESHFS_CONCAT_(_res_, __LINE__).ok())                            \
    return MESHFS_CONCAT_(_res_, __LINE__).status();                    \
  lhs = std::move(MESHFS_CONCAT_(_res_, __LINE__)).value()
