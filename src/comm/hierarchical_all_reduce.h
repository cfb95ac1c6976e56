// src/comm/hierarchical_all_reduce.h — all-reduce for groups that span hosts:
// reduce inside each host, all-reduce across hosts among one rank per host
// (one per slice: a rail), then share the result inside each host.
//
// Why: a flat all-reduce whose every rank crosses hosts (recursive doubling
// or halving, a ring whose neighbours sit on other hosts) puts the traffic
// of a host's R ranks on its one link, ~2R(P-1)/P buffers. Done
// hierarchically, the link carries one buffer's 2(H-1)/H, split over the
// host's rails (2.3x less for 4 hosts of 2 ranks), each rail runs the
// network stack on its slice only, and the steps inside a host use its fast
// paths. A ring in host order already crosses
// each link once per direction, 2(P-1)/P: against it the bytes allow at most
// (P-1)H/(P(H-1)), 1.17x at 4 x 2 (docs/cluster.md measures both). NCCL
// and Horovod build their cross-node all-reduce the same way.
//
// Inside a host both steps go through the host's shared-memory window
// (shm_all_reduce.h), whose waits sleep rather than spin. With R rails (R up
// to the smallest host's ranks, fewer for small buffers: rails_for()),
// step 1 is the window's reduce-scatter: local rank r < R gets slice r of R
// summed over the host. In step 2 local rank r all-reduces slice r with the
// local rank r of every other host (its "rail", as NCCL runs one ring per
// NIC), as a ring: reduce-scatter, then all-gather. Step 3 is the window's
// all-gather of the slices. Every element is summed in one order, so every
// rank gets the same bits. Without a window on every host (no room in
// /dev/shm) local rank 0 carries the whole buffer and the host steps are
// MPI_Reduce and MPI_Bcast.
//
// Whether it wins depends on the links, so, as for the shared-memory window
// (shm_all_reduce.h), the communicator asks beats_flat() per power-of-two
// size class, which times both once on scratch buffers and keeps the slowest
// rank's verdict (PARATORCH_HIERARCHICAL=always skips the measurement, =0
// turns the path off).
//
// PARATORCH_NODE_SIZE=K (tests only) groups ranks into "hosts" of K
// consecutive ranks instead of asking MPI which ranks share a node, so the
// path can be checked against the flat one on a single machine.
#pragma once
#include "comm/measured_choice.h"
#include "comm/shm_all_reduce.h"
#include <paratorch/communicator.h>

#include <mpi.h>
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>

namespace paratorch::comm {

/// Sizes that shape the path; the defaults are measured (see the .cpp), tests
/// shrink them to cross every boundary on small buffers.
struct HierarchicalTuning {
  /// A rail carries at least this much (fewer rails for smaller buffers).
  int64_t min_rail_bytes = 2 << 20;
  /// A chunk crosses the ring in segments of at most this.
  int64_t ring_segment_bytes = 1 << 20;
  /// The host window's chunk (ShmAllReduce::create's max_chunk_bytes).
  int64_t window_chunk_bytes = ShmAllReduce::kMaxChunkBytes;
};

class HierarchicalAllReduce {
 public:
  /// Collective over `comm`. nullptr when all ranks share one host or every
  /// host holds one rank (nothing to gain): the caller keeps the flat path.
  static std::unique_ptr<HierarchicalAllReduce> create(MPI_Comm comm, HierarchicalTuning tuning = {});
  ~HierarchicalAllReduce();

  /// In-place all-reduce of a contiguous CPU fp32/fp64 tensor
  /// (ShmAllReduce::suits); kAvg is done as a sum, then divided by the
  /// group size. Collective.
  void run(torch::Tensor& host, ReduceOp op);

  /// Whether run() beats MPI_Allreduce over the whole group for fp32 buffers
  /// of about `bytes` (measured once per power-of-two size class; every rank
  /// gets the same answer). Collective.
  bool beats_flat(int64_t bytes);

  int hosts() const { return hosts_; }

 private:
  HierarchicalAllReduce() = default;
  void rail_all_reduce(void* data, int count, MPI_Datatype type, MPI_Op op, int64_t elem);
  int rails_for(int64_t bytes) const;

  MPI_Comm comm_ = MPI_COMM_NULL;     // the whole group (not owned)
  MPI_Comm local_ = MPI_COMM_NULL;    // this host's ranks
  MPI_Comm rail_ = MPI_COMM_NULL;     // local rank r of every host (r < rails_); NULL elsewhere
  int rails_ = 1;                     // at most: the smallest host's ranks (see create())
  int local_rank_ = 0;
  std::unique_ptr<ShmAllReduce> local_shm_;  // this host's window; nullptr: MPI inside the host too
  int size_ = 1;
  int hosts_ = 1;
  HierarchicalTuning tuning_;
  MeasuredChoice choice_;  // hierarchical or flat, per size class
};

}  // namespace paratorch::comm
