// src/parallel/pipeline/executor.h — runs one rank's action list of a Schedule.
//
// One executor runs any schedule: it walks the list, posts receives and
// sends non-blocking on the pipeline group (tags from transfer_tag, buffer
// shapes agreed up front from the activation shapes every rank computes
// alike), runs forwards and backwards of its model chunks, computes the loss
// on the last model stage and accumulates gradients over micro-batches.
// Activations cross a stage boundary detached: the receiver's copy is a
// leaf that requires grad, so its .grad after the backward is exactly the
// gradient to send back (the classic GPipe/Megatron p2p formulation).
//
// Before each backward the executor tells its owner which chunk it is for and
// whether it is that chunk's last backward of the step: after it the chunk's
// gradients are final, so a data-parallel reducer can all-reduce them while
// the rest of the schedule runs (PipelineEngine turns DDP's no_sync off for
// that backward only).
//
// Activation checkpointing (Chen et al., 2016; GPipe §2.2): the forward runs
// without autograd and keeps only the stage's input; the backward recomputes
// the forward with autograd, then backpropagates. Memory per micro-batch in
// flight drops to one boundary activation, for one extra forward.
#pragma once
#include "models/model.h"
#include "parallel/pipeline/schedule.h"
#include <paratorch/communicator.h>

#include <functional>
#include <map>
#include <memory>
#include <vector>

namespace paratorch::pipeline {

/// The blocks of one model stage, run in order.
struct StageChunk {
  int model_stage = 0;
  std::vector<models::ModelBlock> blocks;
  torch::Tensor forward(torch::Tensor x) const;
};

/// Shape and dtype of the activation leaving model stage b (b = 0..S-2),
/// with the batch dimension (dim 0) given as -1.
struct BoundarySpec {
  std::vector<int64_t> shape;
  torch::Dtype dtype = torch::kFloat;
};

/// Called right before a backward (or W) of `chunk`; `last_of_chunk`: no
/// later one of that chunk follows in this step.
using BackwardObserver = std::function<void(int chunk, bool last_of_chunk)>;
/// Called right after the last backward (or W) of `chunk` in a step.
using LastBackwardDone = std::function<void(int chunk)>;

/// Loss of a model's output on a micro-batch (the model's criterion).
using Criterion = std::function<torch::Tensor(const torch::Tensor& output, const models::Batch& batch)>;

struct ExecutorStats {
  int peak_in_flight = 0;           // micro-batch chunks forwarded, not yet backwarded (W included)
  int peak_retained_graphs = 0;     // I done, W pending
  int64_t unsplit_backwards = 0;    // I/W pairs whose graph could not be split (split_backward.h)
  int64_t peak_stored_bytes = 0;    // boundary tensors + outputs kept for backward
  /// With measure_memory(): the largest growth of the process's heap (malloc
  /// in use, mmap'd blocks included) over its level at the step's start,
  /// sampled after every action — the activations autograd keeps; -1 = off.
  int64_t peak_heap_growth_bytes = -1;
};

class Executor {
 public:
  /// `chunks[c]` is this rank's chunk c; `pp` the pipeline group (its rank
  /// is the pipeline rank). `boundaries` has model_stages - 1 entries.
  Executor(std::shared_ptr<Communicator> pp, Schedule schedule, std::vector<StageChunk> chunks,
           std::vector<BoundarySpec> boundaries, torch::Device device, bool activation_checkpointing);
  ~Executor();

  /// Runs the whole list for `micro` (one entry per micro-batch; inputs are
  /// read on the first model stage, targets on the last). Each micro-batch's
  /// loss is multiplied by `loss_scale` before its backward. Returns the sum
  /// of the scaled losses on the rank holding the last stage, 0 elsewhere.
  double run_step(const std::vector<models::Batch>& micro, const Criterion& criterion, double loss_scale);

  /// Forward only, without autograd, of one batch through every chunk; the
  /// last model stage's output on its rank, an undefined tensor elsewhere.
  torch::Tensor forward_only(const models::Batch& batch);

  const Schedule& schedule() const { return schedule_; }
  /// Installs the observer of every backward (replaces the previous one)
  /// and, optionally, the callback after each chunk's last one.
  void observe_backwards(BackwardObserver observer, LastBackwardDone after_last = {}) {
    observer_ = std::move(observer), after_last_ = std::move(after_last);
  }
  /// Position in this rank's action list of each chunk's last backward or W (-1: none).
  const std::vector<int>& last_backwards() const { return last_backward_; }
  const ExecutorStats& stats() const { return stats_; }
  /// Samples the heap after every action (glibc's mallinfo2; benchmarks only).
  void measure_memory(bool on) { measure_memory_ = on; }
  void reset_stats() { stats_ = ExecutorStats{}; }
  bool holds_last_stage() const;

 private:
  struct Slot;  // the state of one (micro-batch, chunk) during a step
  void run_action(const Action& a, const std::vector<models::Batch>& micro, const Criterion& criterion,
                  double loss_scale, double& loss_sum);
  /// Posts slot.grad_in to the stage before `stage` (non-blocking).
  void send_grad(Slot& slot, int stage, int microbatch);
  torch::Tensor boundary_buffer(int boundary, int64_t batch) const;
  int peer_rank(int model_stage) const;
  void drain_sends(bool wait);
  void note_storage();

  std::shared_ptr<Communicator> pp_;
  Schedule schedule_;
  std::vector<StageChunk> chunks_;
  std::vector<BoundarySpec> boundaries_;
  torch::Device device_;
  bool checkpointing_;
  int rank_;
  std::vector<int> last_backward_;  // per chunk: index of its last backward in this rank's list
  BackwardObserver observer_;
  LastBackwardDone after_last_;
  std::map<std::pair<int, int>, std::unique_ptr<Slot>> slots_;
  std::vector<std::pair<WorkHandle, torch::Tensor>> sends_;  // tensors live until sent
  ExecutorStats stats_;
  bool measure_memory_ = false;
  int64_t heap_at_start_ = 0;
};

}  // namespace paratorch::pipeline
