// PeerAddress parsing: "HOST:PORT", "[V6]:PORT" and comma-separated lists of
// them. These strings come from the command line and from the network
// (X-Meshfs-Forward, gossip), so the parser is strict and fuzzed.
#include <charconv>

#include "meshfs/net/peer_client.h"

namespace meshfs::net {
namespace {

constexpr size_t kMaxHostLength = 253;

bool IsHostnameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

bool IsV6Char(char c) {
  return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9') || c == ':' ||
         c == '.';
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Status Bad(std::string_view text, std::string_view why) {
  std::string shown(text.substr(0, 80));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return Status::InvalidArgument("bad peer address '" + shown + "': " + std::string(why) +
                                 " (expected HOST:PORT or [V6]:PORT)");
}

}  // namespace

Result<PeerAddress> PeerAddress::Parse(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return Bad(text, "missing ']'");
    host = text.substr(1, close - 1);
    if (host.empty()) return Bad(text, "empty host");
    for (char c : host) {
      if (!IsV6Char(c)) return Bad(text, "invalid character in IPv6 address");
    }
    if (host.find(':') == std::string_view::npos) return Bad(text, "brackets hold an IPv6 address");
    if (close + 1 >= text.size() || text[close + 1] != ':') return Bad(text, "missing port");
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return Bad(text, "missing port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.empty()) return Bad(text, "empty host");
    for (char c : host) {
      if (!IsHostnameChar(c)) return Bad(text, "invalid character in host");
    }
    if (host.front() == '-' || host.front() == '.') return Bad(text, "invalid host");
  }
  if (host.size() > kMaxHostLength) return Bad(text, "host too long");
  if (port.empty() || port.size() > 5) return Bad(text, "invalid port");
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
    return Bad(text, "port must be 1-65535");
  }
  PeerAddress out;
  out.host = std::string(host);
  out.port = static_cast<uint16_t>(value);
  return out;
}

Result<std::vector<PeerAddress>> PeerAddress::ParseList(std::string_view text) {
  std::vector<PeerAddress> out;
  if (Trim(text).empty()) return out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    const std::string_view item = Trim(text.substr(start, comma - start));
    if (item.empty()) return Bad(text, "empty entry in list");
    MESHFS_ASSIGN_OR_RETURN(PeerAddress addr, Parse(item));
    out.push_back(std::move(addr));
    start = comma + 1;
  }
  return out;
}

std::string PeerAddress::ToString() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

}  // namespace meshfs::net
