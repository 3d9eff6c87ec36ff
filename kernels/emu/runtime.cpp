// Launcher of the CPU emulation in cuda_emu.h: `bwb_emu_launch` runs a kernel (called through
// `thunk(ctx)`, which calls the `extern "C"` kernel function with its arguments) on a grid,
// one OS thread per CUDA thread of a block, blocks in order (x fastest).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "cuda_emu.h"

namespace bwb_emu {
thread_local bwb_uint3 thread_idx, block_idx, block_dim, grid_dim;

namespace {
// A reusable barrier for `n` threads that also ORs an int over the arrivals.
struct Barrier {
  std::mutex m;
  std::condition_variable cv;
  int n = 0, count = 0, acc = 0;
  int result[2] = {0, 0};
  unsigned long long gen = 0;
  const char* site = nullptr;  // where this generation's first arrival waits

  int wait(int v, const char* what) {
    std::unique_lock<std::mutex> lk(m);
    const unsigned long long g = gen;
    if (count == 0) {
      site = what;
    } else if (strcmp(site, what) != 0) {
      fprintf(stderr,
              "bwb-emu: divergent barrier: threads of block (%u,%u,%u) wait at %s and at %s\n",
              block_idx.x, block_idx.y, block_idx.z, site, what);
      abort();
    }
    acc |= v;
    if (++count == n) {
      result[g & 1] = acc;
      acc = 0;
      count = 0;
      ++gen;
      cv.notify_all();
      return result[g & 1];
    }
    static const long timeout_s = [] {
      const char* s = getenv("BWB_EMU_TIMEOUT_S");
      return s && atol(s) > 0 ? atol(s) : 60L;
    }();
    if (!cv.wait_for(lk, std::chrono::seconds(timeout_s), [&] { return gen != g; })) {
      fprintf(stderr,
              "bwb-emu: deadlock: block (%u,%u,%u) thread %u waited %ld s at %s that %d of %d "
              "threads reached (a barrier in divergent code)\n",
              block_idx.x, block_idx.y, block_idx.z, thread_idx.x, timeout_s, what, count, n);
      abort();
    }
    return result[g & 1];
  }
};

struct Warp {
  Barrier bar;
  uint32_t slots[2][32];
};

struct Launch {
  Barrier block;
  std::vector<std::unique_ptr<Warp>> warps;
  unsigned char* smem = nullptr;  // 128-byte aligned
  bwb_uint3 grid, dim;
  void (*thunk)(void*);
  void* ctx;
};

Launch* current = nullptr;
// Bytes after the dynamic shared memory checked for stray writes.
constexpr unsigned kGuard = 4096;
thread_local unsigned warp_ops = 0;

unsigned linear_tid() {
  return thread_idx.x + block_dim.x * (thread_idx.y + block_dim.y * thread_idx.z);
}

void check_mask(unsigned mask, const char* what) {
  if (mask != 0xffffffffu) {
    fprintf(stderr, "bwb-emu: %s with lane mask %#x: only full warps are emulated\n", what, mask);
    abort();
  }
}

struct Arg {
  Launch* l;
  unsigned tid;
};

void* run_thread(void* p) {
  const Arg a = *(Arg*)p;
  Launch& l = *a.l;
  block_dim = l.dim;
  grid_dim = l.grid;
  thread_idx.x = a.tid % l.dim.x;
  thread_idx.y = a.tid / l.dim.x % l.dim.y;
  thread_idx.z = a.tid / (l.dim.x * l.dim.y);
  warp_ops = 0;
  for (unsigned z = 0; z < l.grid.z; ++z)
    for (unsigned y = 0; y < l.grid.y; ++y)
      for (unsigned x = 0; x < l.grid.x; ++x) {
        block_idx = {x, y, z};
        l.thunk(l.ctx);
        // Every thread leaves the block before the next one starts (its `static` shared memory
        // is reused). Lane counters restart with each block.
        l.block.wait(0, "the end of the block");
        warp_ops = 0;
      }
  return nullptr;
}
}  // namespace

void sync_block(const char* site) { current->block.wait(0, site); }

int sync_block_or(int pred, const char* site) { return current->block.wait(pred, site); }

uint32_t warp_exchange(uint32_t bits, int src_lane, unsigned mask) {
  check_mask(mask, "a shuffle");
  const unsigned t = linear_tid();
  Warp& w = *current->warps[t / 32];
  // Double-buffered by the warp's op count (equal on every lane): a lane can only overwrite
  // this buffer two ops later, after every lane has read it.
  const unsigned p = warp_ops++ & 1;
  w.slots[p][t & 31] = bits;
  w.bar.wait(0, "a warp shuffle");
  return w.slots[p][src_lane & 31];
}

void sync_warp(unsigned mask) {
  check_mask(mask, "__syncwarp");
  warp_ops++;
  current->warps[linear_tid() / 32]->bar.wait(0, "__syncwarp");
}

unsigned lane() { return linear_tid() & 31; }

void fail(const char* what) {
  fprintf(stderr, "bwb-emu: %s (block (%u,%u,%u) thread %u)\n", what, block_idx.x, block_idx.y,
          block_idx.z, thread_idx.x);
  abort();
}

int warp_any(int pred, unsigned mask) {
  check_mask(mask, "__any_sync");
  warp_ops++;
  return current->warps[linear_tid() / 32]->bar.wait(pred, "__any_sync");
}

void* dynamic_smem() { return current->smem; }
}  // namespace bwb_emu

// threadIdx.x of the calling emulated thread (for tests that drive the emulator itself).
extern "C" unsigned bwb_emu_thread_x() { return bwb_emu::thread_idx.x; }

// Run `thunk(ctx)` on every thread of a `grid` of `block`-sized blocks with `smem` bytes of
// dynamic shared memory (filled with 0xff bytes: NaN floats, so reading it unwritten shows).
// Returns 0, or -1 (with a message on stderr) when the shape cannot be emulated.
extern "C" int bwb_emu_launch(const unsigned grid[3], const unsigned block[3], unsigned smem,
                              void (*thunk)(void*), void* ctx) {
  using namespace bwb_emu;
  const unsigned long long n = (unsigned long long)block[0] * block[1] * block[2];
  if (n == 0 || n > 1024 || n % 32 != 0 || grid[0] == 0 || grid[1] == 0 || grid[2] == 0) {
    fprintf(stderr, "bwb-emu: cannot launch grid (%u,%u,%u) of blocks (%u,%u,%u)\n", grid[0],
            grid[1], grid[2], block[0], block[1], block[2]);
    return -1;
  }
  if (smem > 48 * 1024) {
    fprintf(stderr, "bwb-emu: %u bytes of dynamic shared memory is over the 48 KiB default\n",
            smem);
    return -1;
  }
  static std::mutex one_at_a_time;
  std::lock_guard<std::mutex> guard(one_at_a_time);
  Launch l;
  l.block.n = (int)n;
  for (unsigned w = 0; w < n / 32; ++w) {
    l.warps.emplace_back(new Warp());
    l.warps.back()->bar.n = 32;
  }
  // Dynamic shared memory, then a guard zone that must come back untouched.
  std::unique_ptr<unsigned char, void (*)(void*)> smem_buf(
      (unsigned char*)aligned_alloc(128, (smem + kGuard + 127) / 128 * 128), free);
  memset(smem_buf.get(), 0xff, smem + kGuard);
  l.smem = smem_buf.get();
  l.grid = {grid[0], grid[1], grid[2]};
  l.dim = {block[0], block[1], block[2]};
  l.thunk = thunk;
  l.ctx = ctx;
  current = &l;
  std::vector<pthread_t> threads(n);
  std::vector<Arg> args(n);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  for (unsigned t = 0; t < n; ++t) {
    args[t] = {&l, t};
    if (pthread_create(&threads[t], &attr, run_thread, &args[t]) != 0) {
      fprintf(stderr, "bwb-emu: pthread_create failed at thread %u\n", t);
      abort();
    }
  }
  for (auto& th : threads) pthread_join(th, nullptr);
  pthread_attr_destroy(&attr);
  current = nullptr;
  for (unsigned i = smem; i < smem + kGuard; ++i)
    if (l.smem[i] != 0xff) {
      fprintf(stderr, "bwb-emu: the kernel wrote past its %u bytes of dynamic shared memory\n",
              smem);
      return -1;
    }
  return 0;
}
