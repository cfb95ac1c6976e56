// paratorch/compression.h — fewer bytes for data parallelism's gradient
// exchange: PowerSGD as a DDP communication hook, and 1-bit Adam as an
// optimizer over a DistributedDataParallel model. (16-bit values on the
// wire are ddp.h's comm_hooks::bf16_compress() / fp16_compress().)
//
// PowerSGD (Vogels et al., 2019): each matrix gradient M (n × m, the
// parameter's first dimension by the rest) is replaced by a rank-r
// approximation found with one step of power iteration, warm-started from
// the previous step's Q:  P = M·Q, all-reduce P, orthonormalize P,
// Q = Mᵀ·P, all-reduce Q, M ≈ P·Qᵀ / ranks. Error feedback adds what the
// approximation missed to the next step's gradient. Vectors and matrices
// that r(n + m) would not shrink by min_compression_rate go uncompressed.
// Bytes per matrix: r(n + m) instead of n·m.
///   auto state = std::make_shared<paratorch::PowerSGDState>(paratorch::PowerSGDOptions{});  // rank 1
///   ddp.register_comm_hook(paratorch::comm_hooks::powersgd(state));
///   ... train; checkpoint state->state_tensors() of every rank (the errors differ per rank) ...
//
// 1-bit Adam (Tang et al., 2021): plain Adam (averaged gradients) for
// freeze_step steps, then the variance is frozen and each rank folds its own
// gradient into the momentum, which is averaged by a compressed all-reduce:
// every value travels as its sign (1 bit) plus one scale per 2048 values,
// worker → chunk owner (all-to-all) and back (all-gather), with error
// compensation on both sides (what the signs missed is added next step).
// During the compression stage DDP sends nothing (the optimizer installs its
// own comm hook), so a step exchanges about 1/31.5 of the fp32 bytes.
///   paratorch::DistributedDataParallel ddp(model, world.comm());
///   paratorch::OneBitAdamOptions options;
///   options.freeze_step = 200;
///   std::vector<std::pair<std::string, torch::Tensor>> params;
///   for (auto& item : model->named_parameters()) params.emplace_back(item.key(), item.value());
///   paratorch::OneBitAdam opt(params, ddp, options);
///   for (...) { for (auto& p : model->parameters()) p.mutable_grad().zero_();
///               loss.backward(); opt.step(3e-4); }
#pragma once
#include <paratorch/ddp.h>

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace paratorch {

struct PowerSGDOptions {
  /// r: columns of P and Q (PyTorch's matrix_approximation_rank).
  int rank = 1;
  /// Synchronized passes reduced in full before compression starts (PyTorch's
  /// start_powerSGD_iter): early gradients change fast and are worth sending whole.
  int64_t start_step = 10;
  /// A matrix is compressed only if n·m >= rate · r(n + m).
  double min_compression_rate = 2.0;
  /// Carry the approximation's error into the next step's gradient.
  bool error_feedback = true;
  /// Start each step's power iteration from the last step's Q.
  bool warm_start = true;
  /// Seed of the random initial Q (the same on every rank).
  uint64_t seed = 0;
  /// UsageError naming the field when a value is out of range.
  void validate() const;
};

/// PowerSGD's state across steps: per compressed parameter its Q and this
/// rank's error, and the count of synchronized passes. Shared by the hook.
class PowerSGDState {
 public:
  explicit PowerSGDState(PowerSGDOptions options = {});
  const PowerSGDOptions& options() const { return options_; }
  /// Synchronized passes seen so far.
  int64_t passes() const { return passes_; }
  /// True once a pass was compressed (more than start_step passes).
  bool compressing() const { return passes_ > options_.start_step; }
  /// "<parameter>.powersgd_q" (equal on every rank), "<parameter>.powersgd_error"
  /// (this rank's own) and "powersgd.passes": everything a resumed run needs
  /// to continue bit for bit.
  std::map<std::string, torch::Tensor> state_tensors() const;
  void load_state_tensors(const std::map<std::string, torch::Tensor>& state);
  /// UsageError naming the parameter when a matrix has a dimension smaller
  /// than options().rank (a rank-r approximation of it would not exist).
  void check_shapes(const std::vector<std::pair<std::string, std::vector<int64_t>>>& params) const;

  /// What comm_hooks::powersgd runs for each bucket (returns a completed handle).
  WorkHandle reduce(Communicator& comm, GradBucket& bucket);

 private:
  struct Matrix {
    torch::Tensor q, error;
  };
  void compress(Communicator& comm, GradBucket& bucket, const std::vector<size_t>& matrices);
  torch::Tensor initial_q(int64_t columns);

  PowerSGDOptions options_;
  std::map<std::string, Matrix> matrices_;
  int64_t passes_ = 0;
  uint64_t draws_ = 0;  // random Q initialisations so far (the same count on every rank)
};

namespace comm_hooks {
/// The PowerSGD hook over `state` (see the header comment). Runs its two
/// all-reduces before returning (the approximation of one bucket needs the
/// first's result), so a bucket's exchange does not overlap backward.
/// All-reduce buckets only: ZeRO's reduce-scatter buckets are refused.
CommHook powersgd(std::shared_ptr<PowerSGDState> state);
}  // namespace comm_hooks

struct OneBitAdamOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  /// Decoupled (AdamW) weight decay of matrices and embeddings (dim >= 2).
  double weight_decay = 0.0;
  /// Steps of plain Adam (averaged gradients) before the variance freezes and
  /// the compression stage starts. DeepSpeed recommends 15-25% of the run.
  int64_t freeze_step = 100;
  void validate() const;
};

/// 1-bit Adam over the parameters of a DistributedDataParallel model (see
/// the header comment). Warm-up steps equal AdamW with the same options.
class OneBitAdam {
 public:
  /// Installs its comm hook on `ddp` (plain averaging until freeze_step, then
  /// none), which must outlive this optimizer.
  OneBitAdam(std::vector<std::pair<std::string, torch::Tensor>> params, DistributedDataParallel& ddp,
             OneBitAdamOptions options = {});
  ~OneBitAdam();
  OneBitAdam(const OneBitAdam&) = delete;
  OneBitAdam& operator=(const OneBitAdam&) = delete;
  /// One update at learning rate `lr`, as if every gradient were first
  /// multiplied by `grad_scale`. Collective in the compression stage.
  void step(double lr, double grad_scale = 1.0);
  /// True once freeze_step steps were taken: backward then reduces nothing.
  bool compressing() const;
  int64_t steps() const;
  /// "<parameter>.exp_avg" / ".exp_avg_sq" (equal on every rank, AdamW's
  /// names), "step", and this rank's error compensation
  /// ("onebit.worker_error", "onebit.server_error").
  std::map<std::string, torch::Tensor> state_tensors() const;
  void load_state_tensors(const std::map<std::string, torch::Tensor>& state);

  class Impl;
 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace paratorch
