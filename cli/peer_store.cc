#include "peer_store.h"

#include <sodium.h>

#include <algorithm>
#include <set>

namespace meshfs::cli {

PeerStore::PeerStore(net::PeerClient* client, std::vector<net::PeerAddress> peers, int replicas,
                     std::string owner_hex)
    : client_(client),
      peers_(std::move(peers)),
      replicas_(std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(std::max(replicas, 1)),
                                                     peers_.size()))),
      owner_(std::move(owner_hex)) {}

std::vector<net::PeerAddress> PeerStore::Ranked(const SliceId& id) const {
  std::vector<std::pair<uint64_t, net::PeerAddress>> scored;
  for (const auto& p : peers_) {
    std::string key(id.Raw());
    key += p.ToString();
    uint8_t h[8];
    crypto_generichash(h, sizeof(h), reinterpret_cast<const uint8_t*>(key.data()), key.size(),
                       nullptr, 0);
    uint64_t score = 0;
    for (uint8_t b : h) score = score << 8 | b;
    scored.emplace_back(score, p);
  }
  std::sort(scored.begin(), scored.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<net::PeerAddress> out;
  for (auto& [s, p] : scored) out.push_back(p);
  return out;
}

Status PeerStore::Put(const SliceId& id, std::string_view blob) {
  int copies = 0;
  return PutCounted(id, blob, &copies);
}

Status PeerStore::PutCounted(const SliceId& id, std::string_view blob, int* copies) {
  *copies = 0;
  if (peers_.empty()) return Status::Unavailable("the volume has no peers configured");
  const auto ranked = Ranked(id);
  std::set<std::string> stored;
  std::vector<std::string> failures;
  // Pipeline to the first R.
  std::vector<net::PeerAddress> forward(ranked.begin() + 1, ranked.begin() + replicas_);
  auto r = client_->PutSlice(ranked[0], id, blob, owner_, forward);
  if (r.ok()) {
    for (const auto& s : r->stored_on) stored.insert(s);
    for (const auto& f : r->failed) failures.push_back(f);
  } else {
    if (r.status().Is(Code::kCorruption) || r.status().Is(Code::kInvalidArgument)) {
      return r.status();  // the blob itself is bad: no peer will take it
    }
    failures.push_back(r.status().message());
  }
  // Then each remaining peer directly, down the ranking.
  for (const auto& p : ranked) {
    if (stored.size() >= replicas_) break;
    if (stored.count(p.ToString())) continue;
    auto one = client_->PutSlice(p, id, blob, owner_);
    if (one.ok() && !one->stored_on.empty()) {
      stored.insert(p.ToString());
    } else if (!one.ok()) {
      failures.push_back(one.status().message());
    }
  }
  *copies = static_cast<int>(stored.size());
  if (stored.size() >= replicas_) return Status::OK();
  std::string msg = "slice " + id.ToHex().substr(0, 12) + " is on " +
                    std::to_string(stored.size()) + " of " + std::to_string(replicas_) + " peers";
  if (!failures.empty()) msg += ": " + failures.front();
  bool full = std::any_of(failures.begin(), failures.end(), [](const std::string& f) {
    return f.find("507") != std::string::npos || f.find("full") != std::string::npos;
  });
  return full && stored.empty() ? Status::NoSpace(msg) : Status::Unavailable(msg);
}

Result<std::string> PeerStore::Get(const SliceId& id) {
  if (peers_.empty()) return Status::Unavailable("the volume has no peers configured");
  Status last = Status::NotFound("slice " + id.ToHex().substr(0, 12) + " is on no peer");
  bool unreachable = false;
  bool corrupt = false;
  for (const auto& p : Ranked(id)) {
    auto r = client_->GetSlice(p, id);
    if (r.ok()) return r;
    if (r.status().Is(Code::kCorruption)) corrupt = true;
    else if (!r.status().Is(Code::kNotFound)) unreachable = true;
    if (!r.status().Is(Code::kNotFound)) last = r.status();
  }
  if (unreachable) return Status::Unavailable(last.message());
  if (corrupt) return Status::Corruption(last.message());
  return last;
}

Result<bool> PeerStore::Contains(const SliceId& id) {
  Status last = Status::Unavailable("no peer answered");
  for (const auto& p : Ranked(id)) {
    auto r = client_->HasSlices(p, {id});
    if (r.ok() && !r->empty()) {
      if ((*r)[0]) return true;
      last = Status::OK();
    } else if (!r.ok()) {
      last = r.status();
    }
  }
  if (last.ok()) return false;
  return last;
}

Status PeerStore::Remove(const SliceId&) {
  // References are dropped by `meshfs gc`, which signs its DELETE requests.
  return Status::OK();
}

}  // namespace meshfs::cli
