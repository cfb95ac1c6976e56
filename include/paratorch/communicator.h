// paratorch/communicator.h — collective and point-to-point communication over
// torch tensors, with asynchronous Work handles and deadlines.
//
// MPI is the backend: CPU tensors go to MPI as they are, CUDA tensors are
// staged through pinned host memory. Callers never see the backend.
//
// Example:
///   auto comm = world.comm();                   // every rank
///   torch::Tensor g = torch::ones({1024});
///   auto work = comm->all_reduce_async(g, paratorch::ReduceOp::kSum);
///   ... compute while it runs ...
///   work->wait();                               // g now holds the sum
//
// Every wait has a deadline (CommOptions::timeout_s). When it passes the
// process prints rank, group, operation and sizes, and the whole job exits
// non-zero: nothing hangs forever.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace paratorch {

enum class ReduceOp { kSum, kAvg, kMax, kMin };

/// Settings shared by every communicator of a process.
struct CommOptions {
  /// Seconds any collective or receive may take before the job is ended.
  double timeout_s = 300.0;
  /// Check before every collective that all ranks pass the same operation,
  /// shape and dtype (PARATORCH_DEBUG=1 turns it on). Costs one small
  /// all-gather per collective.
  bool debug_checks = false;
  /// All-reduce large fp32/fp64 buffers through a shared-memory window when
  /// every rank of the group is on one node (PARATORCH_SHM=0 turns it off;
  /// then MPI_Allreduce carries everything).
  bool shm_collectives = true;
  /// Throws UsageError when a value is out of range.
  void validate() const;
};

/// Handle of an operation in flight.
class Work {
 public:
  virtual ~Work() = default;
  /// Blocks until the operation completes. Rethrows its failure. Past the
  /// deadline the job is ended with a message (never returns then).
  virtual void wait() = 0;
  /// True once the operation completed (does not block).
  virtual bool is_completed() = 0;
};
using WorkHandle = std::shared_ptr<Work>;

/// A group of ranks that communicate. Obtain them from World (the world) and
/// ProcessGroups (dp, pp, tp, model-parallel); nothing else creates them.
class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Group name used in messages ("world", "dp", "tp", ...).
  virtual const std::string& name() const = 0;
  /// World ranks of this group's members, in group-rank order.
  virtual const std::vector<int>& world_ranks() const = 0;

  // Asynchronous operations. Tensors must stay alive until wait() returns.
  // Collectives run in the order they were issued on this communicator, which
  // must be the same order on every member.
  virtual WorkHandle all_reduce_async(torch::Tensor tensor, ReduceOp op = ReduceOp::kSum) = 0;
  virtual WorkHandle broadcast_async(torch::Tensor tensor, int root) = 0;
  /// output.numel() == size() * input.numel(); rank r's input lands in slot r.
  virtual WorkHandle all_gather_async(torch::Tensor output, torch::Tensor input) = 0;
  /// input.numel() == size() * output.numel(); rank r receives reduced slot r.
  virtual WorkHandle reduce_scatter_async(torch::Tensor output, torch::Tensor input,
                                          ReduceOp op = ReduceOp::kSum) = 0;
  /// input.numel() == output.numel(), a multiple of size(); slot j of the
  /// input (numel / size() elements) goes to rank j, and rank r's slot j of
  /// the output comes from rank j (MPI_Alltoall, torch's all_to_all_single).
  virtual WorkHandle all_to_all_async(torch::Tensor output, torch::Tensor input) = 0;
  virtual WorkHandle send_async(torch::Tensor tensor, int dst, int tag = 0) = 0;
  virtual WorkHandle recv_async(torch::Tensor tensor, int src, int tag = 0) = 0;
  virtual WorkHandle barrier_async() = 0;

  // Blocking forms. Backends may run them on the calling thread (the MPI
  // backend does when nothing is queued), so they cost what the raw library
  // call costs.
  virtual void all_reduce(torch::Tensor tensor, ReduceOp op = ReduceOp::kSum) {
    all_reduce_async(std::move(tensor), op)->wait();
  }
  virtual void broadcast(torch::Tensor tensor, int root) { broadcast_async(std::move(tensor), root)->wait(); }
  virtual void all_gather(torch::Tensor output, torch::Tensor input) {
    all_gather_async(std::move(output), std::move(input))->wait();
  }
  virtual void reduce_scatter(torch::Tensor output, torch::Tensor input, ReduceOp op = ReduceOp::kSum) {
    reduce_scatter_async(std::move(output), std::move(input), op)->wait();
  }
  virtual void all_to_all(torch::Tensor output, torch::Tensor input) {
    all_to_all_async(std::move(output), std::move(input))->wait();
  }
  virtual void barrier() { barrier_async()->wait(); }
  void send(torch::Tensor tensor, int dst, int tag = 0) { send_async(std::move(tensor), dst, tag)->wait(); }
  void recv(torch::Tensor tensor, int src, int tag = 0) { recv_async(std::move(tensor), src, tag)->wait(); }

  /// A zeroed 1-D buffer of `numel` elements meant to be all-reduced in
  /// slices (DDP's gradient buckets). Collective. Every rank must pass the
  /// same numel and dtype, and later all-reduce the same slices of it. A
  /// backend may place it where its collectives need no staging (MPI on one
  /// node: a shared-memory window the peers read in place); the default is
  /// an ordinary tensor. Valid while this communicator lives.
  virtual torch::Tensor allocate_reduce_buffer(int64_t numel, torch::ScalarType dtype) {
    return torch::zeros({numel}, torch::TensorOptions().dtype(dtype));
  }
  /// One zeroed 1-D buffer that every rank of the group maps: the *same*
  /// memory, not a copy per rank (ZeRO's parameters on one node: each rank
  /// writes its shard in place and a barrier() publishes it — no all-gather).
  /// Collective; every rank passes the same numel and dtype. Returns an
  /// undefined tensor where the backend has no such memory (ranks on several
  /// nodes, one rank, shared memory turned off, the default): callers then
  /// keep a copy per rank. Valid while this communicator lives.
  virtual torch::Tensor allocate_shared_buffer(int64_t numel, torch::ScalarType dtype) {
    (void)numel, (void)dtype;
    return {};
  }
  /// Splits this group (collective over all members). Only ProcessGroups and
  /// World call this: they own every communicator of the job.
  virtual std::shared_ptr<Communicator> split(int color, int key, const std::string& name) = 0;
};

const char* to_string(ReduceOp op);

/// Bytes this process has sent through every communicator since it started,
/// counted as ring algorithms send them, whatever transport carries them
/// (shared memory on one node included), so that layouts and compressors
/// compare on one scale. Per operation on a group of p ranks, for a buffer
/// of n bytes: all-reduce 2(p-1)/p·n; reduce-scatter (n the input) and
/// all-gather (n the output) (p-1)/p·n; all-to-all (p-1)/p·n; broadcast and
/// send n; nothing when p = 1. metrics.jsonl's comm_bytes is its difference
/// over a step.
int64_t comm_bytes_sent();

}  // namespace paratorch
