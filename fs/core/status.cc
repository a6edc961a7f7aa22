#include "meshfs/core/status.h"

#include <cerrno>
#include <cstring>

namespace meshfs {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kNotFound: return "not found";
    case Code::kCorruption: return "corruption";
    case Code::kInvalidArgument: return "invalid argument";
    case Code::kIOError: return "I/O error";
    case Code::kNoSpace: return "no space";
    case Code::kUnavailable: return "unavailable";
    case Code::kPermissionDenied: return "permission denied";
    case Code::kAlreadyExists: return "already exists";
    case Code::kTimedOut: return "timed out";
    case Code::kNotSupported: return "not supported";
    case Code::kTooLarge: return "too large";
    case Code::kAborted: return "aborted";
  }
  return "unknown";
}

Status Status::FromErrno(std::string_view what, int err) {
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  switch (err) {
    case ENOENT: return Status(Code::kNotFound, std::move(msg));
    case ENOSPC:
    case EDQUOT: return Status(Code::kNoSpace, std::move(msg));
    case EACCES:
    case EPERM: return Status(Code::kPermissionDenied, std::move(msg));
    case EEXIST: return Status(Code::kAlreadyExists, std::move(msg));
    case EINVAL: return Status(Code::kInvalidArgument, std::move(msg));
    default: return Status(Code::kIOError, std::move(msg));
  }
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  std::string s(CodeName(code_));
  s += ": ";
  s += msg_;
  return s;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string msg(context);
  msg += ": ";
  msg += msg_;
  return Status(code_, std::move(msg));
}

}  // namespace meshfs
