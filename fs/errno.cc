#include "meshfs/fs/errno.h"

#include <cerrno>

namespace meshfs::fs {

int ToErrno(const Status& status) {
  switch (status.code()) {
    case Code::kOk: return 0;
    case Code::kNotFound: return ENOENT;
    case Code::kCorruption: return EIO;
    case Code::kInvalidArgument: return EINVAL;
    case Code::kIOError: return EIO;
    case Code::kNoSpace: return ENOSPC;
    case Code::kUnavailable: return EIO;
    case Code::kPermissionDenied: return EACCES;
    case Code::kAlreadyExists: return EEXIST;
    case Code::kTimedOut: return ETIMEDOUT;
    case Code::kNotSupported: return EOPNOTSUPP;
    case Code::kTooLarge: return EFBIG;
    case Code::kAborted: return EINTR;
  }
  return EIO;
}

}  // namespace meshfs::fs
