// The one mapping from Status to errno, used at the FUSE boundary.
// Thread-safe (pure function).
#pragma once

#include "meshfs/core/status.h"

namespace meshfs::fs {

// 0 for OK; otherwise the errno a program expects for that failure.
int ToErrno(const Status& status);

}  // namespace meshfs::fs
