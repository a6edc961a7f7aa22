// Names the calling thread (as `top -H`, `ps -L`, perf and gdb show it), so
// an admin can tell FUSE workers from encoders and uploaders.
#pragma once

namespace meshfs {

// `name` is cut to the 15 characters the kernel keeps.
void NameThisThread(const char* name);

}  // namespace meshfs
