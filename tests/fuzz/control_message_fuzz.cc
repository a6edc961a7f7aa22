// Fuzzes the control socket's message parsers (meshfs/fs/control.h): any
// bytes give either a valid request/reply object or a clean error — never a
// crash, an exception or an object that breaks the stated invariants.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "meshfs/fs/control.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  auto request = meshfs::fs::ParseControlRequest(line);
  if (request.ok()) {
    // The server relies on these after a successful parse.
    if (!request->is_object() || !(*request)["op"].is_string() ||
        (*request)["v"] != meshfs::fs::kControlProtocolVersion) {
      std::abort();
    }
    // Replies echo request fields back; dumping must not throw on bad UTF-8.
    (void)request->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else if (request.status().message().empty()) {
    std::abort();
  }
  auto reply = meshfs::fs::ParseControlReply(line);
  if (reply.ok()) {
    if (!reply->is_object()) std::abort();
    if (!reply->contains("progress") && !(*reply)["ok"].is_boolean()) std::abort();
  }
  return 0;
}
