// A caching CPU allocator. libtorch's default CPU allocator hands every block back to the C library
// on free, and glibc returns blocks above its mmap threshold (32 MiB at most) to the kernel: the
// next step's activations of the same size are then mapped and page-faulted in again, page by page.
// On a ViT-L video tower's training step that was a third of the time (perf: 14 % of the samples
// in the page-fault handler; forward + backward 8.4 s → 5.7 s with the blocks kept). It keeps freed
// blocks of 1 MiB and more in size classes (3 significant bits: ≤ 12.5 % rounding) up to a limit,
// and hands them out again; smaller blocks go to the C library as before (its heap reuses them).
// Blocks of 4 MiB and more are aligned to 2 MiB and, where the kernel's transparent huge pages are
// on or on request ("madvise"), advised to take them (MADV_HUGEPAGE): a block is then faulted in
// 2 MiB at a time and covered by fewer TLB entries (a ZeRO-3 step of a 1.1B LLaMA on 2 ranks,
// which maps and faults its buffers anew, took 13.5–14.5 s instead of 15.3–17.3). CPU only; CUDA
// has its own caching allocator.
#pragma once
#include <cstddef>
#include <cstdint>

namespace et::memory {

struct CpuCacheStats {
  bool enabled;
  bool huge_pages;       // new blocks of 4 MiB and more advised to take transparent huge pages
  size_t limit_bytes;    // the most bytes kept while free
  size_t cached_bytes;   // bytes kept now (free, ready for reuse)
  size_t cached_blocks;
  uint64_t hits;         // large allocations served from the cache
  uint64_t misses;       // large allocations that went to the C library
  uint64_t released;     // freed large blocks handed back because the cache was full
  size_t allocated_bytes;  // held by live CPU tensors now (with the allocator's rounding)
  size_t peak_bytes;       // the most allocated_bytes since start or the last reset_peak_cpu_memory()
};

// Makes the caching allocator libtorch's CPU allocator, on, with the default limit (once per
// process; later calls do nothing).
void install_cpu_cache();
// enabled = false hands every block back on free (libtorch's behaviour) and empties the cache; the
// allocator stays installed, so the blocks it gave out are freed correctly.
// huge_pages applies to blocks allocated from then on.
void configure_cpu_cache(bool enabled, size_t limit_bytes, bool huge_pages);
CpuCacheStats cpu_cache_stats();
// Hands every cached block back to the C library; returns the bytes released.
size_t empty_cpu_cache();
// Starts the peak of allocated_bytes over from now.
void reset_peak_cpu_memory();
// A quarter of the machine's physical memory: the default limit.
size_t default_cpu_cache_limit();

}  // namespace et::memory
