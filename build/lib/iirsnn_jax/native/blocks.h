// What the CPU kernels share: blocks of elements run in parallel on XLA's intra-op thread pool, typed views of
// FFI buffers (an absent optional array has no elements), and per-block loads of per-feature parameters.
#ifndef IIRSNN_JAX_NATIVE_BLOCKS_H_
#define IIRSNN_JAX_NATIVE_BLOCKS_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace iirsnn {

namespace ffi = xla::ffi;

constexpr int64_t kBlock = 1024;  // elements carried through T at once: state in L2, rows of 4-8 KB

// Runs fn(block) for every block, on the calling thread and XLA's intra-op pool. The caller works too and only
// waits for blocks that another thread has claimed, so this cannot deadlock when the pool is busy; a task
// that starts after all blocks are claimed returns at once (the shared state outlives the call).
template <typename Fn>
void ParallelBlocks(ffi::ThreadPool& pool, int64_t blocks, Fn fn) {
  struct Shared {
    std::atomic<int64_t> next{0}, done{0};
    int64_t total = 0;
    std::mutex mutex;
    std::condition_variable finished;
  };
  auto shared = std::make_shared<Shared>();
  shared->total = blocks;
  auto work = [shared, fn]() {
    int64_t mine = 0;
    for (int64_t b; (b = shared->next.fetch_add(1)) < shared->total; ++mine) fn(b);
    if (mine > 0 && shared->done.fetch_add(mine) + mine == shared->total) {
      std::lock_guard<std::mutex> lock(shared->mutex);
      shared->finished.notify_all();
    }
  };
  int64_t helpers = std::min<int64_t>(pool.num_threads(), blocks - 1);
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule(decltype(work)(work));  // a copy per task
  work();
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->finished.wait(lock, [&] { return shared->done.load() == shared->total; });
}

template <typename R>
const R* In(const ffi::AnyBuffer& b) {
  return b.element_count() ? static_cast<const R*>(b.untyped_data()) : nullptr;
}
template <typename R>
R* Out(ffi::Result<ffi::AnyBuffer>& b) {
  return b->element_count() ? static_cast<R*>(b->untyped_data()) : nullptr;
}

struct Shape {
  int64_t length, n, features, batch;
};

// Loads per-element parameters of a block: dst[i] = src[(n0 + i) % features], or `fill` when src is absent.
// (A running index: an integer division per element costs more than the whole scan of a short sequence.)
template <typename R>
void LoadFeatures(R* dst, const R* src, int64_t n0, int64_t m, int64_t features, R fill) {
  if (!src) return std::fill(dst, dst + m, fill);
  for (int64_t i = 0, f = n0 % features; i < m; ++i, f = f + 1 == features ? 0 : f + 1) dst[i] = src[f];
}
template <typename R>
void LoadState(R* dst, const R* src, int64_t n0, int64_t m) {
  for (int64_t i = 0; i < m; ++i) dst[i] = src ? src[n0 + i] : R(0);
}

}  // namespace iirsnn

#endif  // IIRSNN_JAX_NATIVE_BLOCKS_H_
