// PeerClient: libcurl multi driven by one background thread.
//
// Send() queues a Transfer and wakes the thread (curl_multi_wakeup); the
// thread adds queued transfers to the multi handle, drives them with
// curl_multi_poll, and completes each one's promise when curl reports it
// done. The multi handle's connection cache gives keep-alive reuse; every
// transfer has a connect timeout and a whole-transfer timeout.
#include "meshfs/net/peer_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>

#include "meshfs/core/buffer_pool.h"
#include "meshfs/core/log.h"
#include "meshfs/core/thread_name.h"

namespace meshfs::net {
namespace {

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string ShortBody(const std::string& body) {
  std::string s = body.substr(0, 200);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return s;
}

// Upload buffer sizes for request bodies (CURLOPT_UPLOAD_BUFFERSIZE).
constexpr size_t kDefaultUploadBuffer = 64 << 10;  // libcurl's default
constexpr size_t kMaxUploadBuffer = 1 << 20;

struct Transfer {
  HttpRequest request;
  // If not null, the body is sent from these bytes instead of request.body,
  // with no copy: the sender waits for the transfer to complete.
  std::string_view body_ref;
  std::promise<Result<HttpResponse>> promise;
  HttpResponse response;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  char error[CURL_ERROR_SIZE] = {0};

  ~Transfer() {
    if (headers != nullptr) curl_slist_free_all(headers);
    if (easy != nullptr) curl_easy_cleanup(easy);
  }
};

constexpr uint64_t kMaxReserve = 64ull << 20;
constexpr long kReceiveBuffer = 512 << 10;  // libcurl's largest before 7.88

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  t->response.body.append(data, size * n);
  return size * n;
}

size_t WriteHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string_view line(data, size * n);
  if (line.starts_with("HTTP/")) {
    t->response.headers.clear();  // a new response (e.g. after 100 Continue)
    return size * n;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name = Lower(std::string(line.substr(0, colon)));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
    value.remove_suffix(1);
  if (name == "content-length") {
    // Room for the body at once (a slice is ~1 MiB: no regrowth copies);
    // bounded, since the number comes from the peer.
    uint64_t len = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), len);
    if (ec == std::errc() && end == value.data() + value.size() && len <= kMaxReserve) {
      t->response.body = BufferPool::Slices().TakeEmpty(len);
    }
  }
  t->response.headers[std::move(name)] = std::string(value);
  return size * n;
}

std::string Describe(const HttpRequest& r) {
  std::string path = r.path;
  // Shorten slice addresses in messages: "/v1/slices/3fa2…".
  constexpr std::string_view kSlices = "/v1/slices/";
  if (path.starts_with(kSlices) && path.size() > kSlices.size() + 12) {
    path = path.substr(0, kSlices.size() + 12) + "...";
  }
  return r.method + " " + path;
}

Status TransportError(const HttpRequest& r, CURLcode code, const char* errbuf) {
  std::string what = (errbuf != nullptr && errbuf[0] != '\0') ? errbuf : curl_easy_strerror(code);
  if (code == CURLE_COULDNT_CONNECT && what.find("refused") == std::string::npos &&
      what.find("Connection") == std::string::npos) {
    what = "connection refused: " + what;
  }
  const std::string msg = "peer " + r.peer.ToString() + ": " + what + " (" + Describe(r) + ")";
  if (code == CURLE_OPERATION_TIMEDOUT) return Status::TimedOut(msg);
  return Status::Unavailable(msg);
}

}  // namespace

class PeerClient::Impl {
 public:
  explicit Impl(Options options) : options_(options) {
    GlobalInitOnce();
    multi_ = curl_multi_init();
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS,
                      static_cast<long>(std::max(1, options_.max_connections_per_host)));
    curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, 256L);
    thread_ = std::thread([this] { Run(); });
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    curl_multi_wakeup(multi_);
    thread_.join();
    // Anything never started.
    for (auto& t : queue_) t->promise.set_value(Status::Aborted("peer client shut down"));
    queue_.clear();
    curl_multi_cleanup(multi_);
  }

  // `body_ref`: see Transfer; the caller keeps it alive until the future is
  // ready.
  std::future<Result<HttpResponse>> Send(HttpRequest request, std::string_view body_ref = {}) {
    auto t = std::make_unique<Transfer>();
    t->request = std::move(request);
    t->body_ref = body_ref;
    auto future = t->promise.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) {
        t->promise.set_value(Status::Aborted("peer client shut down"));
        return future;
      }
      queue_.push_back(std::move(t));
    }
    curl_multi_wakeup(multi_);
    return future;
  }

  void SetRttObserver(RttObserver observer) {
    std::lock_guard<std::mutex> lock(mu_);
    observer_ = std::make_shared<RttObserver>(std::move(observer));
  }

 private:
  // Configures the easy handle of `t`. Returns false (and completes the
  // promise) if the request is malformed.
  bool Setup(Transfer* t) {
    const HttpRequest& r = t->request;
    if (r.path.empty() || r.path.front() != '/' || r.peer.port == 0 || r.peer.host.empty()) {
      t->promise.set_value(
          Status::InvalidArgument("bad request to peer " + r.peer.ToString() + ": " + Describe(r)));
      return false;
    }
    CURL* e = curl_easy_init();
    t->easy = e;
    const std::string url = "http://" + r.peer.ToString() + r.path;
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::max(1, options_.connect_timeout_ms)));
    const int timeout = r.timeout_ms > 0 ? r.timeout_ms : options_.default_timeout_ms;
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(std::max(1, timeout)));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &WriteBody);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &WriteHeader);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    if (r.method == "GET") {
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
      // A slice arrives in a few large reads instead of sixty-four 16 KiB
      // rounds of recv(2) and WriteBody.
      curl_easy_setopt(e, CURLOPT_BUFFERSIZE, kReceiveBuffer);
    } else if (r.method == "HEAD") {
      curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (r.method == "PUT" || r.method == "POST" || r.method == "DELETE") {
      const std::string_view body = t->body_ref.data() != nullptr ? t->body_ref : r.body;
      if (r.method != "DELETE" || !body.empty()) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
        // libcurl copies the body through its upload buffer and goes back
        // to poll(2) after each buffer: a slice in a few large sends, not in
        // sixteen 64 KiB rounds.
        if (body.size() > kDefaultUploadBuffer) {
          curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE,
                           static_cast<long>(std::min(body.size(), kMaxUploadBuffer)));
        }
      }
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
    } else {
      t->promise.set_value(Status::InvalidArgument("unsupported HTTP method '" + r.method + "'"));
      return false;
    }
    // No "Expect: 100-continue" round trip: peers answer errors after the body anyway.
    t->headers = curl_slist_append(t->headers, "Expect:");
    if (r.method == "PUT" || r.method == "POST") {
      bool has_type = false;
      for (const auto& [k, v] : r.headers) has_type |= Lower(k) == "content-type";
      if (!has_type) {
        t->headers = curl_slist_append(t->headers, "Content-Type: application/octet-stream");
      }
    }
    for (const auto& [k, v] : r.headers) {
      if (k.find_first_of(":\r\n") != std::string::npos ||
          v.find_first_of("\r\n") != std::string::npos) {
        t->promise.set_value(
            Status::InvalidArgument("bad header '" + k + "' for peer " + r.peer.ToString()));
        return false;
      }
      t->headers = curl_slist_append(t->headers, (k + ": " + v).c_str());
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    return true;
  }

  void Complete(std::unique_ptr<Transfer> t, CURLcode code) {
    double seconds = 0;
    curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &seconds);
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    const double rtt_ms = seconds * 1000.0;
    std::shared_ptr<RttObserver> observer;
    {
      std::lock_guard<std::mutex> lock(mu_);
      observer = observer_;
    }
    const bool ok = code == CURLE_OK && status > 0 && status < 500;
    if (observer && *observer) (*observer)(t->request.peer, rtt_ms, ok);
    if (code != CURLE_OK) {
      t->promise.set_value(TransportError(t->request, code, t->error));
      return;
    }
    t->response.status = static_cast<int>(status);
    t->response.rtt_ms = rtt_ms;
    t->promise.set_value(std::move(t->response));
  }

  void Run() {
    NameThisThread("peer-client");
    std::unordered_map<Transfer*, std::unique_ptr<Transfer>> active;
    for (;;) {
      std::deque<std::unique_ptr<Transfer>> incoming;
      bool stopping;
      {
        std::lock_guard<std::mutex> lock(mu_);
        incoming.swap(queue_);
        stopping = stopping_;
      }
      if (stopping) {
        for (auto& t : incoming) t->promise.set_value(Status::Aborted("peer client shut down"));
        break;
      }
      for (auto& t : incoming) {
        if (!Setup(t.get())) continue;
        if (curl_multi_add_handle(multi_, t->easy) != CURLM_OK) {
          t->promise.set_value(Status::Unavailable("peer " + t->request.peer.ToString() +
                                                   ": cannot start transfer"));
          continue;
        }
        Transfer* raw = t.get();
        active.emplace(raw, std::move(t));
      }
      int running = 0;
      curl_multi_perform(multi_, &running);
      CURLMsg* msg;
      int left = 0;
      while ((msg = curl_multi_info_read(multi_, &left)) != nullptr) {
        if (msg->msg != CURLMSG_DONE) continue;
        Transfer* raw = nullptr;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &raw);
        const CURLcode code = msg->data.result;
        curl_multi_remove_handle(multi_, msg->easy_handle);
        auto it = active.find(raw);
        if (it == active.end()) continue;
        std::unique_ptr<Transfer> t = std::move(it->second);
        active.erase(it);
        Complete(std::move(t), code);
      }
      curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
    }
    for (auto& [raw, t] : active) {
      curl_multi_remove_handle(multi_, t->easy);
      t->promise.set_value(Status::Aborted("peer client shut down: " + Describe(t->request) +
                                           " to peer " + t->request.peer.ToString() +
                                           " cancelled"));
    }
  }

  const Options options_;
  CURLM* multi_ = nullptr;
  std::mutex mu_;
  std::deque<std::unique_ptr<Transfer>> queue_;  // GUARDED_BY(mu_)
  bool stopping_ = false;                        // GUARDED_BY(mu_)
  std::shared_ptr<RttObserver> observer_;        // GUARDED_BY(mu_)
  std::thread thread_;
};

PeerClient::PeerClient(Options options) : impl_(std::make_unique<Impl>(options)) {}
PeerClient::~PeerClient() = default;

std::future<Result<HttpResponse>> PeerClient::Send(HttpRequest request) {
  return impl_->Send(std::move(request));
}

Result<HttpResponse> PeerClient::Call(HttpRequest request) {
  return Send(std::move(request)).get();
}

void PeerClient::SetRttObserver(RttObserver observer) {
  impl_->SetRttObserver(std::move(observer));
}

namespace {

// Maps a non-2xx reply to a Status naming the peer and the request.
Status HttpError(const HttpRequest& r, const HttpResponse& resp) {
  std::string msg = "peer " + r.peer.ToString() + ": HTTP " + std::to_string(resp.status);
  const std::string reason = ShortBody(resp.body);
  if (!reason.empty()) msg += ": " + reason;
  msg += " (" + Describe(r) + ")";
  switch (resp.status) {
    case 400:
      if (reason.find("does not match") != std::string::npos) return Status::Corruption(msg);
      return Status::InvalidArgument(msg);
    case 401:
    case 403:
      return Status::PermissionDenied(msg);
    case 404:
      return Status::NotFound(msg);
    case 409:
      return Status::AlreadyExists(msg);
    case 413:
      return Status::TooLarge(msg);
    case 507:
      return Status::NoSpace(msg);
    default:
      if (resp.status >= 500) return Status::Unavailable(msg);
      return Status::InvalidArgument(msg);
  }
}

}  // namespace

Result<PutSliceReply> PeerClient::PutSlice(const PeerAddress& peer, const SliceId& id,
                                           std::string_view blob, std::string_view owner,
                                           const std::vector<PeerAddress>& forward) {
  HttpRequest r;
  r.peer = peer;
  r.method = "PUT";
  r.path = "/v1/slices/" + id.ToHex();
  if (!owner.empty()) r.headers["X-Meshfs-Owner"] = std::string(owner);
  if (!forward.empty()) {
    std::string list;
    for (const auto& f : forward) {
      if (!list.empty()) list += ",";
      list += f.ToString();
    }
    r.headers["X-Meshfs-Forward"] = list;
  }
  // Forwarding peers need time for their own downstream transfers.
  r.timeout_ms = 30000 + static_cast<int>(forward.size()) * 15000;
  const HttpRequest described{r.peer, r.method, r.path, {}, {}, r.timeout_ms};
  // The blob is sent from the caller's bytes, not copied: this waits until
  // the transfer is over.
  MESHFS_ASSIGN_OR_RETURN(
      HttpResponse resp,
      impl_->Send(std::move(r), blob.data() != nullptr ? blob : std::string_view("", 0)).get());
  if (resp.status != 200 && resp.status != 201) return HttpError(described, resp);
  PutSliceReply reply;
  auto json = nlohmann::json::parse(resp.body, nullptr, /*allow_exceptions=*/false);
  if (json.is_object() && json.contains("stored_on") && json["stored_on"].is_array()) {
    for (const auto& s : json["stored_on"]) {
      if (s.is_string()) reply.stored_on.push_back(s.get<std::string>());
    }
    if (json.contains("failed") && json["failed"].is_array()) {
      for (const auto& s : json["failed"]) {
        if (s.is_string()) reply.failed.push_back(s.get<std::string>());
      }
    }
  } else {
    reply.stored_on.push_back(peer.ToString());
  }
  return reply;
}

Result<std::string> PeerClient::GetSlice(const PeerAddress& peer, const SliceId& id) {
  HttpRequest r;
  r.peer = peer;
  r.method = "GET";
  r.path = "/v1/slices/" + id.ToHex();
  const HttpRequest described = r;
  MESHFS_ASSIGN_OR_RETURN(HttpResponse resp, Call(std::move(r)));
  if (resp.status != 200) return HttpError(described, resp);
  if (!id.Matches(resp.body)) {
    return Status::Corruption("peer " + peer.ToString() + ": slice " + id.ToHex().substr(0, 12) +
                              "... failed verification (" + std::to_string(resp.body.size()) +
                              " bytes received do not hash to the address)");
  }
  return std::move(resp.body);
}

Result<std::vector<bool>> PeerClient::HasSlices(const PeerAddress& peer,
                                                const std::vector<SliceId>& ids) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& id : ids) list.push_back(id.ToHex());
  HttpRequest r;
  r.peer = peer;
  r.method = "POST";
  r.path = "/v1/slices/has";
  r.body = list.dump();
  r.headers["Content-Type"] = "application/json";
  const HttpRequest described{r.peer, r.method, r.path, {}, {}, r.timeout_ms};
  MESHFS_ASSIGN_OR_RETURN(HttpResponse resp, Call(std::move(r)));
  if (resp.status != 200) return HttpError(described, resp);
  auto json = nlohmann::json::parse(resp.body, nullptr, false);
  if (!json.is_array() || json.size() != ids.size()) {
    return Status::Corruption("peer " + peer.ToString() +
                              ": malformed reply to POST /v1/slices/has (expected " +
                              std::to_string(ids.size()) + " booleans)");
  }
  std::vector<bool> out;
  out.reserve(ids.size());
  for (const auto& b : json) {
    if (!b.is_boolean()) {
      return Status::Corruption("peer " + peer.ToString() +
                                ": malformed reply to POST /v1/slices/has (non-boolean entry)");
    }
    out.push_back(b.get<bool>());
  }
  return out;
}

}  // namespace meshfs::net
