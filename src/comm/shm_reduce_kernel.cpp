// src/comm/shm_reduce_kernel.cpp — the element loops of the shared-memory
// all-reduce (shm_all_reduce.h). Plain loops the compiler vectorizes: they run
// on the communication thread, which must not start torch's thread pool.
// Compiled alone with -fno-math-errno (CMake's *_kernel.cpp rule).
//
// The build targets baseline x86-64 (SSE2). On data already in cache these
// loops are bound by load/store instructions, which wider vectors cut:
// reducing a 12.6 MB slice pair on this machine's Xeon took 2.1 ms with SSE2
// and 1.2 ms with AVX-512 (warm, one thread; cold or contended they are
// bound by memory and gain less). So on x86-64 each entry point is
// cloned per vector width (target_clones, in GCC and clang) and the loader picks the
// widest the CPU has; the templates are always inlined into each clone.
#include "comm/shm_all_reduce.h"

#include <algorithm>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#define PARATORCH_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PARATORCH_VECTOR_CLONES
#endif
#define PARATORCH_INLINE __attribute__((always_inline)) inline

namespace paratorch::comm {
namespace {

template <typename T>
PARATORCH_INLINE void reduce_impl(const T* const* sources, int n_sources, T* dst, int64_t n, ReduceOp op) {
  // Blocks keep dst in L1 while each source streams through it once.
  constexpr int64_t kBlock = 2048;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t len = std::min(kBlock, n - start);
    T* __restrict__ out = dst + start;
    const T* __restrict__ first = sources[0] + start;
    if (out != first)
      for (int64_t i = 0; i < len; ++i) out[i] = first[i];
    for (int s = 1; s < n_sources; ++s) {
      const T* __restrict__ in = sources[s] + start;
      switch (op) {
        case ReduceOp::kSum:
        case ReduceOp::kAvg:
          for (int64_t i = 0; i < len; ++i) out[i] += in[i];
          break;
        case ReduceOp::kMax:
          for (int64_t i = 0; i < len; ++i) out[i] = out[i] < in[i] ? in[i] : out[i];
          break;
        case ReduceOp::kMin:
          for (int64_t i = 0; i < len; ++i) out[i] = in[i] < out[i] ? in[i] : out[i];
          break;
      }
    }
    if (op == ReduceOp::kAvg) {
      const T divisor = static_cast<T>(n_sources);
      for (int64_t i = 0; i < len; ++i) out[i] /= divisor;
    }
  }
}

/// Each block is reduced once into a small local array (slice order, as
/// reduce_impl), then written to every slice (dest < 0) or to slices[dest]
/// only: the slices are both the sources and the destinations, so no slice
/// may be overwritten before every source of that block was read.
template <typename T>
PARATORCH_INLINE void reduce_to_slices_impl(T* const* slices, int n_slices, int dest, int64_t n, ReduceOp op) {
  constexpr int64_t kBlock = 2048;
  alignas(64) T block[kBlock];
  std::vector<const T*> shifted(static_cast<size_t>(n_slices));
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t len = std::min(kBlock, n - start);
    for (int s = 0; s < n_slices; ++s) shifted[static_cast<size_t>(s)] = slices[s] + start;
    reduce_impl(shifted.data(), n_slices, block, len, op);
    for (int s = 0; s < n_slices; ++s) {
      if (dest >= 0 && s != dest) continue;
      T* __restrict__ out = slices[s] + start;
      for (int64_t i = 0; i < len; ++i) out[i] = block[i];
    }
  }
}

// The cloned entry points. They are internal: clang (14) ignores
// target_clones on a function declared earlier without it, as the public
// functions are in shm_all_reduce.h; GCC accepts both.
PARATORCH_VECTOR_CLONES void reduce_in_place(float* const* slices, int n_slices, int dest, int64_t n, ReduceOp op) {
  reduce_to_slices_impl(slices, n_slices, dest, n, op);
}
PARATORCH_VECTOR_CLONES void reduce_in_place(double* const* slices, int n_slices, int dest, int64_t n, ReduceOp op) {
  reduce_to_slices_impl(slices, n_slices, dest, n, op);
}
PARATORCH_VECTOR_CLONES void reduce_into(const float* const* sources, int n_sources, float* dst, int64_t n,
                                         ReduceOp op) {
  reduce_impl(sources, n_sources, dst, n, op);
}
PARATORCH_VECTOR_CLONES void reduce_into(const double* const* sources, int n_sources, double* dst, int64_t n,
                                         ReduceOp op) {
  reduce_impl(sources, n_sources, dst, n, op);
}

}  // namespace

void reduce_slices_to_all(float* const* slices, int n_slices, int64_t n, ReduceOp op) {
  reduce_in_place(slices, n_slices, -1, n, op);
}
void reduce_slices_to_all(double* const* slices, int n_slices, int64_t n, ReduceOp op) {
  reduce_in_place(slices, n_slices, -1, n, op);
}
void reduce_slices_to_one(float* const* slices, int n_slices, int dest, int64_t n, ReduceOp op) {
  reduce_in_place(slices, n_slices, dest, n, op);
}
void reduce_slices_to_one(double* const* slices, int n_slices, int dest, int64_t n, ReduceOp op) {
  reduce_in_place(slices, n_slices, dest, n, op);
}
void reduce_slices(const float* const* sources, int n_sources, float* dst, int64_t n, ReduceOp op) {
  reduce_into(sources, n_sources, dst, n, op);
}
void reduce_slices(const double* const* sources, int n_sources, double* dst, int64_t n, ReduceOp op) {
  reduce_into(sources, n_sources, dst, n, op);
}

}  // namespace paratorch::comm
