#include "memory/cpu_cache.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <vector>

namespace et::memory {
namespace {

constexpr size_t kAlign = 64;               // c10's alignment for CPU tensors
constexpr size_t kHeader = 64;              // before each block: keeps the data 64-byte aligned
constexpr size_t kMinCached = size_t(1) << 20;  // smaller blocks: the C library's heap reuses them
constexpr size_t kRoom = size_t(256) << 20;      // the most kept beyond the high-water mark (see take)
constexpr size_t kHuge = size_t(2) << 20, kHugeMin = size_t(4) << 20;

// The block's own bookkeeping, in the kHeader bytes before the pointer handed out.
struct Header {
  size_t bytes;  // what was allocated, header included
  bool cached;   // a large block (a size class) that may go back to the cache
};
static_assert(sizeof(Header) <= kHeader, "header too large");

// Rounds up to 3 significant bits: 1 MiB, 1.125 MiB, … 2 MiB, 2.25 MiB, …
size_t size_class(size_t n) {
  int top = 63 - __builtin_clzll(static_cast<unsigned long long>(n));
  size_t step = size_t(1) << (top - 3);
  return (n + step - 1) & ~(step - 1);
}

class CpuCache final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n == 0) return {nullptr, nullptr, &release, c10::Device(c10::DeviceType::CPU)};
    // 2^48 bytes (256 TiB) is beyond any machine, and keeps the size-class rounding from overflowing
    TORCH_CHECK_WITH(OutOfMemoryError, n <= (size_t(1) << 48), "CPU allocator: not enough memory: you tried to allocate ", n, " bytes.");
    size_t total = n + kHeader;
    bool large = total >= kMinCached;
    size_t bytes = large ? size_class(total) : total;
    char* block = large ? take(bytes) : nullptr;
    if (!block) block = fresh(bytes, n);
    auto* h = reinterpret_cast<Header*>(block);
    h->bytes = bytes;
    h->cached = large;
    instance().count(bytes);
    void* data = block + kHeader;
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, size_t count) const override { default_copy_data(dest, src, count); }

  static void release(void* data) {
    if (!data) return;
    char* block = static_cast<char*>(data) - kHeader;
    auto* h = reinterpret_cast<Header*>(block);
    instance().live_.fetch_sub(h->bytes, std::memory_order_relaxed);
    if (h->cached && instance().keep(block, h->bytes)) return;
    std::free(block);
  }

  static CpuCache& instance() {
    static CpuCache* c = new CpuCache();  // never destroyed: tensors may be freed during exit
    return *c;
  }

  void configure(bool enabled, size_t limit, bool huge) {
    std::vector<char*> drop;
    huge_.store(huge, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> g(mu_);
      enabled_ = enabled;
      limit_ = limit;  // kept while off, so turning it on again restores it
      trim_to(enabled ? limit : 0, drop);
    }
    for (char* b : drop) std::free(b);
  }

  size_t empty() {
    std::vector<char*> drop;
    size_t before;
    {
      std::lock_guard<std::mutex> g(mu_);
      before = cached_;
      trim_to(0, drop);
    }
    for (char* b : drop) std::free(b);
#if defined(__GLIBC__)
    // Freed blocks below glibc's mmap threshold stay in the heap of the arena (one per thread that
    // allocated them) until trimmed: hand every arena's free pages back, so emptying means the RSS.
    malloc_trim(0);
#endif
    return before;
  }

  CpuCacheStats stats() {
    std::lock_guard<std::mutex> g(mu_);
    size_t blocks = 0;
    for (auto& [size, list] : free_) blocks += list.size();
    return {enabled_, huge_.load(), limit_, cached_, blocks, hits_, misses_, released_, live_.load(), peak_.load()};
  }

  // Bytes of tensors alive now (headers and size-class rounding included), and the peak.
  void count(size_t bytes) {
    size_t now = live_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    size_t peak = peak_.load(std::memory_order_relaxed);
    while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
    size_t high = high_.load(std::memory_order_relaxed);
    while (now > high && !high_.compare_exchange_weak(high, now, std::memory_order_relaxed)) {
    }
  }
  void reset_peak() { peak_.store(live_.load()); }
  // live_: bytes of tensors alive now; peak_: their most since start or reset_peak; high_: their
  // most ever (never reset: the bound on in use + cached, see take)
  std::atomic<size_t> live_{0}, peak_{0}, high_{0};
  std::atomic<bool> huge_{true};

 private:
  // A cached block of the class, or nullptr. On a miss, cached blocks go back to the C library
  // first where in use + cached + the new block would pass the high-water mark of what has been in
  // use (or in use + the new block, when that is higher) by more than an eighth of that mark, 256
  // MiB at most: the process holds at most that much more than the default allocator would have
  // held at its peak (give or take the size-class rounding), and blocks under that stay for the
  // next step. Without the room, a step whose peak leaves none beside it turns the cache over on
  // every step (BEATs' forward: 37 of 197 large allocations missed per forward, each one new pages
  // faulted in; with it 1); an eighth without the cap put the SPECTRA step's peak RSS 0.9 GB up.
  // Handing back a block's worth on every miss, as at first, emptied the cache within each forward
  // of a feature encoder, whose activations halve from conv to conv (53 of 86 missed).
  char* take(size_t bytes) {
    std::vector<char*> drop;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        ++hits_;
        return pop(it);
      }
      ++misses_;
      size_t live = live_.load(std::memory_order_relaxed);
      size_t high = high_.load(std::memory_order_relaxed);
      size_t cap = std::max(high, live + bytes) + std::min(high / 8, kRoom);
      if (live + cached_ + bytes > cap) evict_for(live + cached_ + bytes - cap, drop);
    }
    for (char* b : drop) std::free(b);
    return nullptr;
  }

  // A new block from the C library; when it has none, the cache is emptied and it is asked again.
  char* fresh(size_t bytes, size_t asked) {
    const size_t align = bytes >= kHugeMin && huge_.load(std::memory_order_relaxed) ? kHuge : kAlign;
    void* p = nullptr;
    if (posix_memalign(&p, align, bytes) != 0 || !p) {
      p = nullptr;
      if (empty() > 0 && posix_memalign(&p, align, bytes) != 0) p = nullptr;
    }
    TORCH_CHECK_WITH(OutOfMemoryError, p, "CPU allocator: not enough memory: you tried to allocate ", asked, " bytes.");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // From the second 2 MiB on: the header, written now, would fault a whole huge page into a
    // tensor that may never be touched (a module's parameters made empty before a checkpoint's
    // replace them); up to the bytes asked for, all of which the tensor may use.
    const size_t end = (asked + kHeader) & ~(kHuge - 1);
    if (align == kHuge && end > kHuge) madvise(static_cast<char*>(p) + kHuge, end - kHuge, MADV_HUGEPAGE);
#endif
    return static_cast<char*>(p);
  }

  bool keep(char* block, size_t bytes) {
    std::lock_guard<std::mutex> g(mu_);
    if (!enabled_ || cached_ + bytes > limit_) {
      ++released_;
      return false;
    }
    free_[bytes].push_back(block);
    cached_ += bytes;
    return true;
  }

  // With mu_ held: takes one block of the class out of the cache (the class goes when emptied).
  char* pop(std::map<size_t, std::vector<char*>>::iterator it) {
    char* b = it->second.back();
    it->second.pop_back();
    cached_ -= it->first;
    if (it->second.empty()) free_.erase(it);
    return b;
  }

  // With mu_ held: moves out the smallest cached block of at least `bytes`, or, when there is none,
  // the largest smaller ones until they add up to `bytes` (or the cache is empty).
  void evict_for(size_t bytes, std::vector<char*>& out) {
    auto it = free_.lower_bound(bytes);
    if (it != free_.end()) out.push_back(pop(it));
    else trim_to(cached_ > bytes ? cached_ - bytes : 0, out);
  }

  // With mu_ held: moves blocks out until at most `limit` bytes stay (the largest first).
  void trim_to(size_t limit, std::vector<char*>& out) {
    while (cached_ > limit && !free_.empty()) out.push_back(pop(std::prev(free_.end())));
  }

  std::mutex mu_;
  std::map<size_t, std::vector<char*>> free_;  // size class → free blocks; no empty lists
  bool enabled_ = true;
  size_t limit_ = 0, cached_ = 0;
  uint64_t hits_ = 0, misses_ = 0, released_ = 0;
};

}  // namespace

size_t default_cpu_cache_limit() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return size_t(1) << 30;
  return static_cast<size_t>(pages) * static_cast<size_t>(page) / 4;
}

void install_cpu_cache() {
  static std::once_flag installed;
  std::call_once(installed, [] {
    auto& cache = CpuCache::instance();
    cache.configure(true, default_cpu_cache_limit(), true);
    // Above the default allocator's priority (0), and never taken out: blocks it gave out come back to it.
    c10::SetCPUAllocator(&cache, /*priority=*/1);
  });
}

void configure_cpu_cache(bool enabled, size_t limit_bytes, bool huge_pages) {
  install_cpu_cache();
  CpuCache::instance().configure(enabled, limit_bytes, huge_pages);
}

CpuCacheStats cpu_cache_stats() { return CpuCache::instance().stats(); }

size_t empty_cpu_cache() { return CpuCache::instance().empty(); }

void reset_peak_cpu_memory() { CpuCache::instance().reset_peak(); }

}  // namespace et::memory
