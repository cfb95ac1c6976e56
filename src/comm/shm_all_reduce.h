// src/comm/shm_all_reduce.h — all-reduce through one shared-memory window, for
// groups whose ranks all run on one node.
//
// Why: OpenMPI's shared-memory all-reduce moves a large buffer through
// fragment FIFOs and polls busily while it waits; on a node where ranks share
// few cores with their compute threads that costs more than the arithmetic.
// Measured on the 2-core CI machine: 35 MB fp32, 2 ranks, MPI_Allreduce
// ≈ 25 ms quiet. Here every rank copies its chunk into its slot of the window
// (one write), reduces one 1/P slice of the chunk across all slots (P reads,
// one write), and copies the reduced chunk out (one read): about 2 + 1 + 1
// passes over the data per rank, with no fragmenting and no busy MPI polling.
//
// reduce_scatter() and all_gather() are the host steps of the hierarchical
// all-reduce (hierarchical_all_reduce.h): each moves only what its ranks need.
//
// Two barriers per chunk in run(), one in the others (ShmWindow::barrier,
// shm_window.h). Chunks alternate between two buffers, so a chunk's copy-in
// cannot overwrite a buffer that a slower rank still reads (it passed the
// previous chunk's barrier, hence finished the chunk before). Every element is reduced by one rank in rank order, then
// copied by all: results are bitwise identical on every rank.
//
// Whether the window beats MPI is the machine's, not a constant: on the same
// 2-core VM it ran 16 MiB in 3.8 ms against MPI's 6.6 ms one week and in
// 7.5 ms against MPI's 6.1 ms another. So the communicator asks
// beats_mpi() per power-of-two size class, which times both once and keeps
// the answer (PARATORCH_SHM=always skips the measurement).
//
// Waits carry no deadline of their own: they run inside a collective, which
// the communication thread already watches (watchdog.h).
#pragma once
#include "comm/measured_choice.h"
#include "comm/shm_window.h"
#include <paratorch/communicator.h>

#include <mpi.h>
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <utility>
#include <vector>
#include <memory>

namespace paratorch::comm {

class ShmAllReduce {
 public:
  /// Collective over `comm`. nullptr when the ranks are not all on one node,
  /// the group has one rank, or the window cannot be allocated (the caller
  /// then keeps using MPI). `max_chunk_bytes` caps the per-rank slot (tests
  /// use small chunks to cross chunk boundaries cheaply).
  static std::unique_ptr<ShmAllReduce> create(MPI_Comm comm, int64_t max_chunk_bytes = kMaxChunkBytes);
  static constexpr int64_t kMaxChunkBytes = 16ll << 20;

  /// Smallest tensor (bytes) worth the window; below it MPI's latency wins.
  static constexpr int64_t kMinBytes = 256 * 1024;
  /// True for contiguous CPU fp32/fp64 tensors of at least kMinBytes.
  static bool suits(const torch::Tensor& host);

  /// In-place all-reduce of `host` (suits(host) must hold). Collective.
  void run(torch::Tensor& host, ReduceOp op);

  int size() const { return window_->size(); }

  /// Element ranges [begin, end) of a buffer, one per rank of the window.
  using Slices = std::vector<std::pair<int64_t, int64_t>>;

  /// In-place reduce-scatter: afterwards `slices[rank]` of this rank's
  /// `host` holds the reduction of every rank's elements there (the rest of
  /// `host` is left as it was). One copy in and one 1/P reduction per rank,
  /// against run()'s two copies. Collective.
  void reduce_scatter(torch::Tensor& host, ReduceOp op, const Slices& slices);
  /// In-place all-gather: every rank's `host` gets `slices[q]` from rank q.
  /// Collective.
  void all_gather(torch::Tensor& host, const Slices& slices);

  /// Whether run() is faster than MPI_Allreduce for fp32 buffers of about
  /// `bytes` on this group now: the first call for a power-of-two size class
  /// times both on scratch buffers of that size (best of three each, the
  /// slowest rank's time counts) and every rank keeps the same answer.
  /// Collective: call it from the op itself, where every rank passes the
  /// same size in the same order.
  bool beats_mpi(int64_t bytes);

 private:
  ShmAllReduce(MPI_Comm comm, std::unique_ptr<ShmWindow> window, int64_t chunk_bytes)
      : comm_(comm), window_(std::move(window)), chunk_bytes_(chunk_bytes) {}
  char* slot(int buffer, int rank) const { return window_->segment(rank) + buffer * chunk_bytes_; }
  using ChunkFn = std::function<void(int64_t start, int64_t n, const std::vector<char*>& slots)>;
  void each_chunk(const torch::Tensor& host, const ChunkFn& fn);

  MPI_Comm comm_;
  std::unique_ptr<ShmWindow> window_;  // each rank's segment: [2 buffers][chunk_bytes]
  MeasuredChoice choice_;              // window or MPI, per size class
  int64_t chunk_bytes_;
  uint64_t chunks_ = 0;  // chunks done (buffer parity)
};

/// Kernels (shm_reduce_kernel.cpp): dst[i] = reduce over sources[0..n_sources)[i], in
/// source order; kAvg divides the sum by n_sources (as the MPI path does).
void reduce_slices(const float* const* sources, int n_sources, float* dst, int64_t n, ReduceOp op);
void reduce_slices(const double* const* sources, int n_sources, double* dst, int64_t n, ReduceOp op);
/// slices[q][i] = reduce over slices[0..n_slices)[i] for every q: the same
/// reduction, in slice order, written back to every slice (symmetric buffers).
void reduce_slices_to_all(float* const* slices, int n_slices, int64_t n, ReduceOp op);
void reduce_slices_to_all(double* const* slices, int n_slices, int64_t n, ReduceOp op);
/// The same reduction written to slices[dest] only (a reduce-scatter in place).
void reduce_slices_to_one(float* const* slices, int n_slices, int dest, int64_t n, ReduceOp op);
void reduce_slices_to_one(double* const* slices, int n_slices, int dest, int64_t n, ReduceOp op);

}  // namespace paratorch::comm
