// Keeps XLA's large per-step buffers mapped between steps (see buffer_cache.py), loaded with LD_PRELOAD.
//
// XLA on CPU allocates every step's temporary buffer (GBs for a conv network) with posix_memalign and frees it
// at the end of the step; glibc maps each such block afresh and unmaps it on free, so every step the kernel
// zeroes GBs of new pages on first touch. Here posix_memalign requests of at least kMinBytes are mapped by this
// file, and a freed block stays mapped, idle, for the next request of exactly its size (XLA asks for the same
// sizes every step). XLA requests the next step's buffer just before it frees the last one (within 0.1 ms);
// so that one block serves every step, a request that finds its size only in use waits up to kPatience for it
// (a block that outlives a wait is not waited for again until it comes back). Idle blocks beyond
// IIRSNN_BUFFER_CACHE_LIMIT bytes (default: a quarter of physical memory) are unmapped, the least recently
// freed first. Everything else goes to glibc unchanged; free, realloc
// and malloc_usable_size recognise this file's blocks (page-aligned, so one AND spares glibc's pointers the
// table lookup).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// glibc's own entry points, exported for allocators that wrap it (no dlsym inside free: dlsym may allocate).
extern void __libc_free(void* p);
extern void* __libc_malloc(size_t size);
extern void* __libc_realloc(void* p, size_t size);
extern void* __libc_memalign(size_t alignment, size_t size);

enum { kSlots = 256 };
static const size_t kMinBytes = (size_t)64 << 20;
static const long kPatienceMicroseconds = 5000, kPollMicroseconds = 50;

struct Block {
  void* start;
  size_t bytes;
  int idle;
  int outlived_wait;  // in use through a whole wait: not waited for again until it is freed
  uint64_t freed_at;  // for evicting the least recently freed idle block
};

static struct Block blocks[kSlots];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static size_t page = 4096, idle_bytes = 0, limit = 0;
static int huge_pages = 0;
static uint64_t clock_ticks = 0, hits = 0, misses = 0;
static int (*glibc_posix_memalign)(void**, size_t, size_t);
static size_t (*glibc_usable_size)(void*);

static void lock_for_fork(void) { pthread_mutex_lock(&lock); }
static void unlock_after_fork(void) { pthread_mutex_unlock(&lock); }

__attribute__((constructor)) static void configure(void) {
  page = (size_t)sysconf(_SC_PAGESIZE);
  limit = (size_t)sysconf(_SC_PHYS_PAGES) * page / 4;
  const char* text = getenv("IIRSNN_BUFFER_CACHE_LIMIT");
  if (text && *text) {
    char* end;
    unsigned long long value = strtoull(text, &end, 10);
    if (*end == '\0') limit = (size_t)value;
  }
  const char* thp = getenv("IIRSNN_BUFFER_CACHE_HUGE_PAGES");
  huge_pages = thp && strcmp(thp, "1") == 0;
  glibc_posix_memalign = (int (*)(void**, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
  glibc_usable_size = (size_t (*)(void*))dlsym(RTLD_NEXT, "malloc_usable_size");
  pthread_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork);  // a child must not inherit a held lock
}

// The slot of a block of this file starting at p, or -1; with the lock held.
static int find(const void* p) {
  for (int i = 0; i < kSlots; ++i)
    if (blocks[i].start == p) return i;
  return -1;
}

// Unmaps idle blocks, least recently freed first, until at most `keep` idle bytes remain; with the lock held.
static void evict(size_t keep) {
  while (idle_bytes > keep) {
    int oldest = -1;
    for (int i = 0; i < kSlots; ++i)
      if (blocks[i].start && blocks[i].idle && (oldest < 0 || blocks[i].freed_at < blocks[oldest].freed_at))
        oldest = i;
    if (oldest < 0) return;
    munmap(blocks[oldest].start, blocks[oldest].bytes);
    idle_bytes -= blocks[oldest].bytes;
    memset(&blocks[oldest], 0, sizeof blocks[oldest]);
  }
}

// Takes an idle block of exactly `bytes` (returns its start) or returns NULL; with the lock held.
static void* reuse(size_t bytes) {
  for (int i = 0; i < kSlots; ++i) {
    if (blocks[i].start && blocks[i].idle && blocks[i].bytes == bytes) {
      blocks[i].idle = 0;
      idle_bytes -= bytes;
      ++hits;
      return blocks[i].start;
    }
  }
  return NULL;
}

// Whether a block of `bytes` is in use and worth waiting for; with the lock held.
static int worth_waiting(size_t bytes) {
  for (int i = 0; i < kSlots; ++i)
    if (blocks[i].start && !blocks[i].idle && !blocks[i].outlived_wait && blocks[i].bytes == bytes) return 1;
  return 0;
}

// An idle block of exactly `bytes`, or a new mapping; NULL when out of memory or out of slots.
static void* take(size_t bytes) {
  pthread_mutex_lock(&lock);
  void* start = reuse(bytes);
  for (long waited = 0; !start && waited < kPatienceMicroseconds && worth_waiting(bytes);
       waited += kPollMicroseconds) {
    pthread_mutex_unlock(&lock);
    usleep(kPollMicroseconds);
    pthread_mutex_lock(&lock);
    start = reuse(bytes);
  }
  if (start) {
    pthread_mutex_unlock(&lock);
    return start;
  }
  ++misses;
  for (int i = 0; i < kSlots; ++i)
    if (blocks[i].start && !blocks[i].idle && blocks[i].bytes == bytes) blocks[i].outlived_wait = 1;
  int slot = find(NULL);
  start = MAP_FAILED;
  if (slot >= 0) {
    start = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (start == MAP_FAILED) {  // idle blocks of other sizes are only a cache: give them back and retry
      evict(0);
      start = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
  }
  if (start == MAP_FAILED) {
    pthread_mutex_unlock(&lock);
    return NULL;
  }
  if (huge_pages) madvise(start, bytes, MADV_HUGEPAGE);
  blocks[slot] = (struct Block){start, bytes, 0, 0, 0};
  pthread_mutex_unlock(&lock);
  return start;
}

// Marks p idle if it is a block of this file (then returns 1).
static int release(void* p) {
  if (((uintptr_t)p & (page - 1)) != 0) return 0;
  pthread_mutex_lock(&lock);
  int slot = find(p);
  if (slot >= 0 && !blocks[slot].idle) {
    blocks[slot].idle = 1;
    blocks[slot].outlived_wait = 0;
    blocks[slot].freed_at = ++clock_ticks;
    idle_bytes += blocks[slot].bytes;
    evict(limit);
  }
  pthread_mutex_unlock(&lock);
  return slot >= 0;
}

// The size of p's block if it is one of this file's, else 0.
static size_t block_bytes(void* p) {
  if (((uintptr_t)p & (page - 1)) != 0) return 0;
  pthread_mutex_lock(&lock);
  int slot = find(p);
  size_t bytes = slot >= 0 ? blocks[slot].bytes : 0;
  pthread_mutex_unlock(&lock);
  return bytes;
}

int posix_memalign(void** out, size_t alignment, size_t size) {
  int valid = alignment >= sizeof(void*) && (alignment & (alignment - 1)) == 0;
  if (valid && size >= kMinBytes && alignment <= page && size <= SIZE_MAX - page) {
    void* start = take((size + page - 1) & ~(page - 1));
    if (start) {
      *out = start;
      return 0;
    }
  }
  if (glibc_posix_memalign) return glibc_posix_memalign(out, alignment, size);
  if (!valid) return EINVAL;  // before the constructor has run: glibc's memalign, with posix_memalign's checks
  void* p = __libc_memalign(alignment, size);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

void free(void* p) {
  if (p && release(p)) return;
  __libc_free(p);
}

void* realloc(void* p, size_t size) {
  size_t bytes = p ? block_bytes(p) : 0;
  if (!bytes) return __libc_realloc(p, size);
  if (size == 0) {
    release(p);
    return NULL;
  }
  if (size <= bytes) return p;
  void* moved = __libc_malloc(size);
  if (!moved) return NULL;
  memcpy(moved, p, bytes);
  release(p);
  return moved;
}

size_t malloc_usable_size(void* p) {
  size_t bytes = p ? block_bytes(p) : 0;
  if (bytes) return bytes;
  if (!glibc_usable_size) glibc_usable_size = (size_t (*)(void*))dlsym(RTLD_NEXT, "malloc_usable_size");
  return glibc_usable_size(p);
}

// [hits, misses, idle bytes, mapped bytes] since the process started (tests and the benchmark read it).
void iirsnn_buffer_cache_stats(uint64_t out[4]) {
  pthread_mutex_lock(&lock);
  uint64_t mapped = 0;
  for (int i = 0; i < kSlots; ++i) mapped += blocks[i].bytes;
  out[0] = hits;
  out[1] = misses;
  out[2] = idle_bytes;
  out[3] = mapped;
  pthread_mutex_unlock(&lock);
}
