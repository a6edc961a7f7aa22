#include "meshfs/fs/file_data.h"

#include <algorithm>
#include <cstring>
#include <tuple>

#include "meshfs/core/buffer_pool.h"
#include "meshfs/core/thread_name.h"

namespace meshfs::fs {
namespace {
// Sequential reads fetch this far ahead (in slices: kReadaheadBytes, at least
// 2 and at most 64 slices). Cold reads wait on the peers' disks and the
// network, not on the CPU: on one machine, 4 fetchers 8 slices ahead read a
// cold 512 MiB file in 1.6 s, 8 / 16 in 1.5 s, 16 / 32 in 1.4 s.
constexpr uint64_t kReadaheadBytes = 32ull << 20;
constexpr size_t kCommitBatch = 256;
// A write at least this large into a new slice buffer reserves the whole slice.
constexpr uint64_t kReserveWrite = 64 * 1024;

bool AllZero(std::string_view d) {
  static const char kZeros[4096] = {};
  while (!d.empty()) {
    size_t n = std::min(d.size(), sizeof(kZeros));
    if (std::memcmp(d.data(), kZeros, n) != 0) return false;
    d.remove_prefix(n);
  }
  return true;
}
}  // namespace

WriteBackPool::WriteBackPool(int threads, size_t max_queued)
    : max_queued_(std::max<size_t>(max_queued, 1)) {
  for (int i = 0; i < std::max(threads, 1); ++i) threads_.emplace_back([this] { Loop(); });
}

WriteBackPool::~WriteBackPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void WriteBackPool::Submit(std::function<void()> job) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return busy_ < max_queued_; });
  ++busy_;
  jobs_.push_back(std::move(job));
  lock.unlock();
  cv_.notify_all();
}

void WriteBackPool::Loop() {
  NameThisThread("slice-encoder");
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
    if (jobs_.empty()) return;  // stopping, and every queued job ran
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    job = nullptr;
    lock.lock();
    --busy_;
    cv_.notify_all();
  }
}

FileData::FileData(uint64_t ino, uint32_t slice_size, uint64_t size,
                   std::optional<std::string> inline_data,
                   const std::vector<ExtentRecord>& extents, FileDataBackend* backend,
                   uint64_t dirty_max, WriteBackPool* pool)
    : ino_(ino),
      slice_size_(slice_size),
      backend_(backend),
      dirty_max_(std::max<uint64_t>(dirty_max, slice_size)),
      readahead_slices_(std::clamp<uint64_t>(kReadaheadBytes / std::max<uint32_t>(slice_size, 1),
                                             2, 64)),
      pool_(pool),
      size_(size),
      inline_(std::move(inline_data)) {
  for (const auto& e : extents) extents_[e.idx] = e;
  if (inline_ && !extents_.empty()) inline_.reset();  // extents win (cannot both exist)
}

FileData::~FileData() { Discard(); }

void FileData::AddDirty(int64_t delta) {
  dirty_bytes_ = static_cast<uint64_t>(static_cast<int64_t>(dirty_bytes_) + delta);
  backend_->AccountDirty(delta);
}

uint64_t FileData::SliceLen(uint64_t idx) const {
  uint64_t start = idx * slice_size_;
  if (start >= size_) return 0;
  return std::min(slice_size_, size_ - start);
}

bool FileData::HasContent(uint64_t idx) const {
  return dirty_.count(idx) || inflight_.count(idx) || extents_.count(idx) ||
         (idx == 0 && inline_ && !inline_->empty());
}

Result<FileData::Dirty*> FileData::DirtyFor(uint64_t idx, bool need_base) {
  auto it = dirty_.find(idx);
  if (it != dirty_.end()) return &it->second;
  Dirty d;
  if (need_base) {
    if (idx == 0 && inline_) {
      d.data = *inline_;
    } else if (auto f = inflight_.find(idx); f != inflight_.end()) {
      d.data = *f->second.data;  // newer than the extent, which may be pending
    } else if (auto e = extents_.find(idx); e != extents_.end()) {
      MESHFS_ASSIGN_OR_RETURN(SliceBytes base, backend_->LoadSlice(e->second.slice));
      d.data = *base;
    }
    if (d.data.size() > SliceLen(idx)) d.data.resize(SliceLen(idx));
  }
  int64_t n = static_cast<int64_t>(d.data.size());
  auto [pos, inserted] = dirty_.emplace(idx, std::move(d));
  (void)inserted;
  AddDirty(n);
  return &pos->second;
}

Status FileData::LeaveInlineLocked() {
  if (!inline_) return Status::OK();
  if (!inline_->empty()) {
    MESHFS_ASSIGN_OR_RETURN(Dirty * d, DirtyFor(0, true));
    d->seq = ++seq_;
  }
  inline_.reset();
  inline_dirty_ = true;
  meta_dirty_ = true;
  return Status::OK();
}

Status FileData::Read(uint64_t off, uint64_t len, std::string* out,
                      std::vector<std::pair<uint64_t, std::string>>* rest) {
  ReadBuffer b;
  MESHFS_RETURN_IF_ERROR(Read(off, len, &b, rest));
  *out = std::move(b).Take();
  return Status::OK();
}

Status FileData::Read(uint64_t off, uint64_t len, ReadBuffer* out,
                      std::vector<std::pair<uint64_t, std::string>>* rest) {
  out->owned.clear();
  out->shared.reset();
  out->view = {};
  std::vector<std::tuple<uint64_t, SliceId, uint64_t>> fetch;  // slice idx, address, length
  std::vector<SliceId> ahead;
  uint64_t end;
  // A read inside one stored or in-flight slice is served from the slice's
  // shared bytes, without a copy; others are assembled in out->owned.
  bool zero_copy = false;
  // Copies bytes [lo, hi) of the slice starting at file offset s0, as far as
  // `src` has them, into out->owned (which starts at `off`).
  auto place = [&](uint64_t s0, uint64_t lo, uint64_t hi, const std::string& src) {
    if (lo < src.size()) {
      std::memcpy(out->owned.data() + (s0 + lo - off), src.data() + lo,
                  std::min<uint64_t>(hi, src.size()) - lo);
    }
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    ReapLocked();
    if (off >= size_ || len == 0) return Status::OK();
    len = std::min(len, size_ - off);
    end = off + len;
    const uint64_t first = off / slice_size_;
    const uint64_t lo1 = off - first * slice_size_, hi1 = end - first * slice_size_;
    if (first == (end - 1) / slice_size_ && !dirty_.count(first) && !(first == 0 && inline_)) {
      if (auto f = inflight_.find(first); f != inflight_.end()) {
        if (f->second.data->size() >= hi1) {
          out->shared = f->second.data;
          out->view = std::string_view(*out->shared).substr(lo1, hi1 - lo1);
        }
      } else if (auto e = extents_.find(first); e != extents_.end()) {
        fetch.emplace_back(first, e->second.slice, SliceLen(first));
        zero_copy = true;
      }
    }
    if (!out->shared && !zero_copy) {
      out->owned.assign(len, '\0');
      out->view = out->owned;
      for (uint64_t idx = first; idx * slice_size_ < end; ++idx) {
        uint64_t s0 = idx * slice_size_;
        uint64_t lo = std::max(off, s0) - s0;
        uint64_t hi = std::min(end, s0 + slice_size_) - s0;
        const std::string* src = nullptr;
        if (auto d = dirty_.find(idx); d != dirty_.end()) {
          src = &d->second.data;
        } else if (auto f = inflight_.find(idx); f != inflight_.end()) {
          src = f->second.data.get();
        } else if (idx == 0 && inline_) {
          src = &*inline_;
        } else if (auto e = extents_.find(idx); e != extents_.end()) {
          fetch.emplace_back(idx, e->second.slice, SliceLen(idx));
          continue;
        }
        if (src) place(s0, lo, hi, *src);
      }
    }
    if (off == last_read_end_ || off == 0) {
      uint64_t next = (end + slice_size_ - 1) / slice_size_;
      for (auto e = extents_.lower_bound(next);
           e != extents_.end() && e->first < next + readahead_slices_; ++e) {
        if (!dirty_.count(e->first) && !inflight_.count(e->first)) {
          ahead.push_back(e->second.slice);
        }
      }
    }
    last_read_end_ = end;
  }
  if (!ahead.empty()) backend_->Prefetch(ahead);
  for (const auto& [idx, id, slice_len] : fetch) {
    MESHFS_ASSIGN_OR_RETURN(SliceBytes bytes, backend_->LoadSlice(id));
    const std::string& plain = *bytes;
    uint64_t s0 = idx * slice_size_;
    uint64_t lo = std::max(off, s0) - s0;
    uint64_t hi = std::min(end, s0 + slice_size_) - s0;
    if (zero_copy && plain.size() >= hi) {
      out->view = std::string_view(plain).substr(lo, hi - lo);
      out->shared = bytes;
    } else {
      if (zero_copy) {  // a short slice: the rest of the read is zeros
        out->owned.assign(len, '\0');
        out->view = out->owned;
      }
      place(s0, lo, hi, plain);
    }
    if (rest != nullptr) {
      // The parts of the slice before and after the read, whole pages only.
      constexpr uint64_t kPage = 4096;
      const uint64_t have = std::min<uint64_t>(plain.size(), slice_len);
      const uint64_t before = lo / kPage * kPage;
      const uint64_t after = (hi + kPage - 1) / kPage * kPage;
      if (after < have) rest->emplace_back(s0 + after, plain.substr(after, have - after));
      if (before > 0 && before <= have) rest->emplace_back(s0, plain.substr(0, before));
    }
  }
  return Status::OK();
}

Status FileData::Write(uint64_t off, std::string_view data, bool append, uint64_t* at) {
  std::lock_guard<std::mutex> lock(mu_);
  ReapLocked();
  MESHFS_RETURN_IF_ERROR(TakeErrorLocked());
  if (append) off = size_;
  if (at) *at = off;
  if (data.empty()) return Status::OK();
  const uint64_t end = off + data.size();
  if (end < off) return Status::TooLarge("write beyond the largest file offset");
  if (end > kInlineMax) MESHFS_RETURN_IF_ERROR(LeaveInlineLocked());
  const uint64_t first = off / slice_size_;
  const uint64_t last = (end - 1) / slice_size_;
  for (uint64_t idx = first; idx <= last; ++idx) {
    uint64_t s0 = idx * slice_size_;
    uint64_t lo = std::max(off, s0) - s0;
    uint64_t hi = std::min(end, s0 + slice_size_) - s0;
    bool need_base = !(lo == 0 && hi >= SliceLen(idx)) && HasContent(idx);
    MESHFS_ASSIGN_OR_RETURN(Dirty * d, DirtyFor(idx, need_base));
    uint64_t old = d->data.size();
    const char* src = data.data() + (s0 + lo - off);
    if (lo == old) {
      // Appending (streaming writes): no zero-fill before the copy, and room
      // for the whole slice at once when the writes are large.
      if (hi - lo >= kReserveWrite && d->data.capacity() < slice_size_) {
        d->data.reserve(slice_size_);
      }
      d->data.append(src, hi - lo);
    } else {
      if (old < hi) d->data.resize(hi, '\0');
      std::memcpy(d->data.data() + lo, src, hi - lo);
    }
    AddDirty(static_cast<int64_t>(d->data.size()) - static_cast<int64_t>(old));
    d->seq = ++seq_;
  }
  if (end > size_) size_ = end;
  mtime_ns_ = ctime_ns_ = backend_->NowNs();
  meta_dirty_ = times_dirty_ = true;
  if (inline_) return Status::OK();  // small file: everything at Flush
  // A slice completed by this write goes to the store now (streaming writes).
  for (uint64_t idx = first; idx <= last; ++idx) {
    auto d = dirty_.find(idx);
    if (d != dirty_.end() && d->second.data.size() == slice_size_ &&
        end >= (idx + 1) * slice_size_) {
      MESHFS_RETURN_IF_ERROR(WriteBackLocked(idx));
    }
  }
  while (dirty_bytes_ > dirty_max_ && !dirty_.empty()) {
    auto oldest = std::min_element(dirty_.begin(), dirty_.end(), [](const auto& a, const auto& b) {
      return a.second.seq < b.second.seq;
    });
    MESHFS_RETURN_IF_ERROR(WriteBackLocked(oldest->first));
  }
  if (uncommitted_.size() >= kCommitBatch) MESHFS_RETURN_IF_ERROR(CommitLocked(false));
  return Status::OK();
}

Status FileData::WriteBackLocked(uint64_t idx, bool here) {
  auto it = dirty_.find(idx);
  if (it == dirty_.end()) return Status::OK();
  const std::string& data = it->second.data;
  if (data.empty() || AllZero(data)) {
    // A slice of zeros is stored as a hole: no slice, reads give zeros.
    extents_.erase(idx);
    inflight_.erase(idx);  // an older write-back of it must not set an extent
  } else if (pool_ != nullptr && !here) {
    auto shared = BufferPool::Slices().Share(std::move(it->second.data));
    const uint64_t gen = ++gen_;
    inflight_[idx] = InFlight{shared, gen, it->second.seq};
    AddDirty(-static_cast<int64_t>(shared->size()));
    dirty_.erase(it);
    {
      std::lock_guard<std::mutex> dl(done_mu_);
      ++pending_;
    }
    FileDataBackend* backend = backend_;
    pool_->Submit([this, backend, shared, idx, gen] {
      Done d{idx, gen, Status::OK(), SliceId()};
      Result<SliceId> r = backend->StoreSlice(*shared);
      if (r.ok()) d.id = *r;
      else d.status = r.status();
      std::lock_guard<std::mutex> dl(done_mu_);
      done_.push_back(std::move(d));
      --pending_;
      done_cv_.notify_all();  // under done_mu_: the file may go away right after
    });
    return Status::OK();
  } else {
    MESHFS_ASSIGN_OR_RETURN(SliceId id, backend_->StoreSlice(data));
    extents_[idx] = ExtentRecord{idx, id, static_cast<uint32_t>(data.size())};
  }
  uncommitted_.insert(idx);
  AddDirty(-static_cast<int64_t>(data.size()));
  dirty_.erase(it);
  return Status::OK();
}

void FileData::ReapLocked() {
  std::vector<Done> done;
  {
    std::lock_guard<std::mutex> dl(done_mu_);
    if (done_.empty()) return;
    done.swap(done_);
  }
  for (Done& d : done) {
    auto f = inflight_.find(d.idx);
    if (f == inflight_.end() || f->second.gen != d.gen) {
      // Superseded (newer data, a hole, a truncation): only the error counts.
      if (!d.status.ok() && error_.ok()) error_ = d.status;
      continue;
    }
    if (d.status.ok()) {
      extents_[d.idx] = ExtentRecord{d.idx, d.id, static_cast<uint32_t>(f->second.data->size())};
      uncommitted_.insert(d.idx);
    } else {
      if (error_.ok()) error_ = d.status;
      if (!dirty_.count(d.idx)) {  // keep the data for the next flush
        Dirty back;
        back.data = *f->second.data;
        back.seq = f->second.seq;
        int64_t n = static_cast<int64_t>(back.data.size());
        dirty_.emplace(d.idx, std::move(back));
        AddDirty(n);
      }
    }
    inflight_.erase(f);
  }
}

Status FileData::WaitIdleLocked() {
  {
    std::unique_lock<std::mutex> dl(done_mu_);
    done_cv_.wait(dl, [&] { return pending_ == 0; });
  }
  ReapLocked();
  return TakeErrorLocked();
}

Status FileData::TakeErrorLocked() {
  Status st = std::move(error_);
  error_ = Status::OK();
  return st;
}

Status FileData::Truncate(uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  MESHFS_RETURN_IF_ERROR(WaitIdleLocked());
  if (size == size_) return Status::OK();
  if (size < size_) {
    const uint64_t first_drop = (size + slice_size_ - 1) / slice_size_;
    for (auto it = dirty_.lower_bound(first_drop); it != dirty_.end();) {
      AddDirty(-static_cast<int64_t>(it->second.data.size()));
      it = dirty_.erase(it);
    }
    if (extents_.lower_bound(first_drop) != extents_.end()) {
      extents_.erase(extents_.lower_bound(first_drop), extents_.end());
      delete_from_ = std::min(delete_from_.value_or(UINT64_MAX), first_drop);
    }
    uncommitted_.erase(uncommitted_.lower_bound(first_drop), uncommitted_.end());
    size_ = size;
    if (size % slice_size_ != 0) {
      const uint64_t p = size / slice_size_;
      const uint64_t keep = size - p * slice_size_;
      if (auto d = dirty_.find(p); d != dirty_.end()) {
        if (d->second.data.size() > keep) {
          AddDirty(static_cast<int64_t>(keep) - static_cast<int64_t>(d->second.data.size()));
          d->second.data.resize(keep);
        }
      } else if (p == 0 && inline_) {
        if (inline_->size() > keep) {
          inline_->resize(keep);
          inline_dirty_ = true;
        }
      } else if (auto e = extents_.find(p); e != extents_.end() && e->second.len > keep) {
        MESHFS_ASSIGN_OR_RETURN(Dirty * d, DirtyFor(p, true));  // cut to SliceLen(p)
        d->seq = ++seq_;
      }
    }
  } else {
    if (size > kInlineMax) MESHFS_RETURN_IF_ERROR(LeaveInlineLocked());
    size_ = size;
  }
  mtime_ns_ = ctime_ns_ = backend_->NowNs();
  meta_dirty_ = times_dirty_ = true;
  return Status::OK();
}

Status FileData::CommitLocked(bool durable) {
  if (!meta_dirty_ && !inline_dirty_ && uncommitted_.empty() && !delete_from_ && !durable) {
    return Status::OK();
  }
  FileCommit c;
  c.size = size_;
  c.times = times_dirty_;
  c.mtime_ns = mtime_ns_;
  c.ctime_ns = ctime_ns_;
  c.delete_from = delete_from_;
  for (uint64_t idx : uncommitted_) {
    auto e = extents_.find(idx);
    if (e != extents_.end()) c.put.push_back(e->second);
    else c.remove.push_back(idx);
  }
  c.set_inline = inline_dirty_;
  c.inline_data = inline_;
  c.durable = durable;
  MESHFS_RETURN_IF_ERROR(backend_->CommitFile(ino_, c));
  uncommitted_.clear();
  delete_from_.reset();
  meta_dirty_ = times_dirty_ = inline_dirty_ = false;
  return Status::OK();
}

Status FileData::Flush(bool durable) {
  std::lock_guard<std::mutex> lock(mu_);
  MESHFS_RETURN_IF_ERROR(WaitIdleLocked());
  const bool small = size_ <= kInlineMax && extents_.empty() &&
                     (dirty_.empty() || (dirty_.size() == 1 && dirty_.begin()->first == 0));
  if (small && (!dirty_.empty() || !inline_ || delete_from_)) {
    // Small enough to live in the inode record: no slice at all.
    std::string content;
    if (!dirty_.empty()) content = std::move(dirty_.begin()->second.data);
    else if (inline_) content = std::move(*inline_);
    if (content.size() > size_) content.resize(size_);
    if (!dirty_.empty()) {
      AddDirty(-static_cast<int64_t>(dirty_bytes_));
      dirty_.clear();
    }
    inline_ = std::move(content);
    inline_dirty_ = true;
  } else if (!inline_) {
    std::vector<uint64_t> idxs;
    for (const auto& [idx, d] : dirty_) idxs.push_back(idx);
    // One slice (every small file at close): handing it to a pool thread and
    // waiting for it only adds two thread switches. Nothing of this file is
    // in flight (waited for above), so storing it here cannot race one.
    const bool here = idxs.size() == 1;
    Status st;
    for (uint64_t idx : idxs) {
      st = WriteBackLocked(idx, here);
      if (!st.ok()) break;
    }
    Status waited = WaitIdleLocked();  // also on error: nothing stays in flight
    MESHFS_RETURN_IF_ERROR(st);
    MESHFS_RETURN_IF_ERROR(waited);
  }
  return CommitLocked(durable);
}

Status FileData::Commit() {
  std::lock_guard<std::mutex> lock(mu_);
  ReapLocked();
  return CommitLocked(false);
}

void FileData::Discard() {
  std::lock_guard<std::mutex> lock(mu_);
  {
    std::unique_lock<std::mutex> dl(done_mu_);
    done_cv_.wait(dl, [&] { return pending_ == 0; });
    done_.clear();
  }
  inflight_.clear();
  error_ = Status::OK();
  if (dirty_bytes_ != 0) AddDirty(-static_cast<int64_t>(dirty_bytes_));
  dirty_.clear();
  uncommitted_.clear();
  meta_dirty_ = times_dirty_ = inline_dirty_ = false;
}

uint64_t FileData::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return size_;
}

uint64_t FileData::allocated() {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t n = inline_ ? inline_->size() : 0;
  for (const auto& [idx, e] : extents_) {
    if (!dirty_.count(idx) && !inflight_.count(idx)) n += e.len;
  }
  for (const auto& [idx, f] : inflight_) {
    if (!dirty_.count(idx)) n += f.data->size();
  }
  for (const auto& [idx, d] : dirty_) n += d.data.size();
  return n;
}

std::pair<int64_t, int64_t> FileData::pending_times() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!times_dirty_) return {0, 0};
  return {mtime_ns_, ctime_ns_};
}

void FileData::ClearPendingTimes() {
  std::lock_guard<std::mutex> lock(mu_);
  times_dirty_ = false;
}

void FileData::SetPendingTimes(int64_t mtime_ns, int64_t ctime_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  mtime_ns_ = mtime_ns;
  ctime_ns_ = ctime_ns;
  meta_dirty_ = times_dirty_ = true;
}

uint64_t FileData::dirty_bytes() {
  std::lock_guard<std::mutex> lock(mu_);
  return dirty_bytes_;
}

std::optional<uint64_t> FileData::Seek(uint64_t off, bool data) {
  std::lock_guard<std::mutex> lock(mu_);
  if (off >= size_) return std::nullopt;
  uint64_t idx = off / slice_size_;
  if (data) {
    if (HasContent(idx)) return off;
    uint64_t next = UINT64_MAX;
    if (auto e = extents_.lower_bound(idx); e != extents_.end()) next = std::min(next, e->first);
    if (auto d = dirty_.lower_bound(idx); d != dirty_.end()) next = std::min(next, d->first);
    if (auto f = inflight_.lower_bound(idx); f != inflight_.end()) next = std::min(next, f->first);
    if (next == UINT64_MAX || next * slice_size_ >= size_) return std::nullopt;
    return next * slice_size_;
  }
  while (idx * slice_size_ < size_ && HasContent(idx)) ++idx;
  return std::min(std::max(off, idx * slice_size_), size_);
}

SliceBytes SliceCache::Get(const SliceId& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = index_.find(id);
  if (it == index_.end()) {
    misses_.fetch_add(1);
    return nullptr;
  }
  hits_.fetch_add(1);
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->second;
}

void SliceCache::Put(const SliceId& id, SliceBytes plaintext) {
  std::lock_guard<std::mutex> lock(mu_);
  if (plaintext == nullptr || plaintext->size() > max_bytes_) return;
  auto it = index_.find(id);
  if (it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  bytes_ += plaintext->size();
  lru_.emplace_front(id, std::move(plaintext));
  index_[id] = lru_.begin();
  while (bytes_ > max_bytes_ && !lru_.empty()) {
    bytes_ -= lru_.back().second->size();
    index_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

void SliceCache::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  lru_.clear();
  index_.clear();
  bytes_ = 0;
}

uint64_t SliceCache::bytes() {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

}  // namespace meshfs::fs
