// src/comm/mpi_communicator.h — the MPI backend of Communicator.
//
// Collectives run on this communicator's OpQueue thread (so they overlap the
// caller's compute); point-to-point transfers start immediately on the
// caller's thread as MPI_Isend/MPI_Irecv and are completed by wait(), which
// polls under a deadline. Requires MPI_THREAD_MULTIPLE (World checks).
#pragma once
#include "comm/op_queue.h"
#include "comm/hierarchical_all_reduce.h"
#include "comm/shm_all_reduce.h"
#include "comm/symmetric_buffer.h"
#include <paratorch/communicator.h>

#include <mpi.h>

#include <atomic>
#include <memory>

namespace paratorch::comm {

/// A collective ready to run: what it is, and the MPI call(s) to make.
struct PendingOp {
  OpInfo info;
  std::function<void()> run;
};

class MpiCommunicator : public Communicator {
 public:
  /// Takes ownership of `comm` (freed in the destructor unless it is MPI_COMM_WORLD).
  MpiCommunicator(MPI_Comm comm, std::string name, CommOptions options);
  ~MpiCommunicator() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  const std::vector<int>& world_ranks() const override { return world_ranks_; }

  WorkHandle all_reduce_async(torch::Tensor tensor, ReduceOp op) override;
  WorkHandle broadcast_async(torch::Tensor tensor, int root) override;
  WorkHandle all_gather_async(torch::Tensor output, torch::Tensor input) override;
  WorkHandle reduce_scatter_async(torch::Tensor output, torch::Tensor input, ReduceOp op) override;
  WorkHandle all_to_all_async(torch::Tensor output, torch::Tensor input) override;
  WorkHandle send_async(torch::Tensor tensor, int dst, int tag) override;
  WorkHandle recv_async(torch::Tensor tensor, int src, int tag) override;
  WorkHandle barrier_async() override;
  void all_reduce(torch::Tensor tensor, ReduceOp op) override;
  void broadcast(torch::Tensor tensor, int root) override;
  void all_gather(torch::Tensor output, torch::Tensor input) override;
  void reduce_scatter(torch::Tensor output, torch::Tensor input, ReduceOp op) override;
  void all_to_all(torch::Tensor output, torch::Tensor input) override;
  void barrier() override;
  /// In a SymmetricBuffer when the shared-memory path is on and the group
  /// has several ranks on one node (fp32/fp64 only); else the default.
  torch::Tensor allocate_reduce_buffer(int64_t numel, torch::ScalarType dtype) override;
  /// One ShmWindow::create_one_copy segment when the shared-memory path is
  /// on and the group has several ranks on one node; else undefined.
  torch::Tensor allocate_shared_buffer(int64_t numel, torch::ScalarType dtype) override;
  std::shared_ptr<Communicator> split(int color, int key, const std::string& name) override;

  MPI_Comm mpi_comm() const { return comm_; }

 private:
  /// Fills group fields and the sequence number of a collective.
  OpInfo collective_info(const std::string& op, const torch::Tensor& tensor, int peer = -1);
  PendingOp make_all_reduce(torch::Tensor tensor, ReduceOp op);
  PendingOp make_broadcast(torch::Tensor tensor, int root);
  PendingOp make_all_gather(torch::Tensor output, torch::Tensor input);
  PendingOp make_reduce_scatter(torch::Tensor output, torch::Tensor input, ReduceOp op);
  PendingOp make_all_to_all(torch::Tensor output, torch::Tensor input);
  PendingOp make_barrier();
  /// With debug checks on, prefixes `run` with the all-ranks-agree check.
  PendingOp with_debug_check(OpInfo info, std::function<void()> run);
  WorkHandle submit(PendingOp op);  // on the communication thread
  void run_now(PendingOp op);       // blocking; on the caller when idle
  void check_peer(int peer, const char* what) const;
  /// The shared-memory path for `host`, created on first use (collective:
  /// every rank reaches it at the same all-reduce); nullptr means MPI.
  ShmAllReduce* shm_for(const torch::Tensor& host);
  /// The hierarchical path when the group spans hosts and it measured faster
  /// for this size (hierarchical_all_reduce.h); nullptr: flat MPI.
  HierarchicalAllReduce* hierarchical_for(const torch::Tensor& host);
  /// The symmetric buffer `tensor` is a slice of, or nullptr.
  SymmetricBuffer* symmetric_for(const torch::Tensor& tensor);

  MPI_Comm comm_;
  std::string name_;
  CommOptions options_;
  int rank_ = 0, size_ = 1, world_rank_ = 0;
  std::vector<int> world_ranks_;
  uint64_t group_key_ = 0;
  std::atomic<uint64_t> sequence_{0};
  std::atomic<uint64_t> p2p_sequence_{0};
  enum class ShmState { kUntried, kOn, kOff };
  ShmState shm_state_ = ShmState::kUntried;  // touched only by the op being run
  std::unique_ptr<ShmAllReduce> shm_;
  ShmState hierarchical_state_ = ShmState::kUntried;  // likewise
  std::unique_ptr<HierarchicalAllReduce> hierarchical_;
  /// allocate_reduce_buffer's windows; appended and read only by ops run in
  /// queue order (run_now / the communication thread).
  std::vector<std::unique_ptr<SymmetricBuffer>> symmetric_;
  std::vector<std::unique_ptr<ShmWindow>> shared_;  // allocate_shared_buffer's windows
  std::unique_ptr<OpQueue> queue_;
};

}  // namespace paratorch::comm
