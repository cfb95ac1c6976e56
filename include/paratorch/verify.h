// paratorch/verify.h — check that a parallelized model trains exactly as the
// same model in one process: the test `paratorch verify` runs on the bundled
// models, for the user's own models.
//
// Layout invariance (docs/verify.md): for the same initial weights and the
// same global batches, any parallel layout must give the same losses and the
// same parameters as one process training the whole model on the whole
// batch, up to float summation order. A check trains two `Trainee`s on the
// same batches, the single-process reference and the parallel one, and
// reports the largest relative differences (|a - b| / max(|b|, tiny) over
// losses; ||a - b|| / ||b|| per parameter).
//
// A Trainee is a pair of functions, so any parallelism (or none) fits:
//   step(batch)        one optimizer step on the *global* batch; returns the
//                      step's mean loss over the global batch, on every rank;
//   full_parameters()  every parameter as a full tensor under its name in
//                      the unparallelized model (collective: each rank
//                      contributes its shards).
//
// Example (DDP; any parallelism plugs in the same way):
///   auto make_model = [] { torch::manual_seed(0); return std::make_shared<Net>(); };
///   auto batches = [](int64_t step) { return paratorch::Batch{x_of(step), y_of(step)}; };
///   auto reference = [&] {
///     auto net = make_model();
///     auto opt = std::make_shared<torch::optim::SGD>(net->parameters(), 0.1);
///     return paratorch::plain_trainee(net, opt, [net](const paratorch::Batch& b) {
///       return torch::mse_loss(net->forward(b.input), b.target); });
///   };
///   auto parallel = [&] { ... DDP over the same make_model(), stepping on
///                         paratorch::local_slice(b, rank, size) ... };
///   auto report = paratorch::check_equivalence(world.comm(), batches, reference, parallel, {});
///   std::puts(report.summary_line("ddp").c_str());   // "verify: ddp steps=5 ... PASS"
#pragma once
#include <paratorch/communicator.h>

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace paratorch {

/// Inputs and targets of some samples.
struct Batch {
  torch::Tensor input;
  torch::Tensor target;
  int64_t size() const { return input.defined() ? input.size(0) : 0; }
};

/// Rank `rank`'s contiguous share of `batch` along dim 0 when it is split
/// over `size` ranks (DistributedSampler's slicing). UsageError when `size`
/// does not divide the batch.
Batch local_slice(const Batch& batch, int rank, int size);

/// One way of training a model; see the header comment.
struct Trainee {
  std::function<double(const Batch& global_batch)> step;
  std::function<std::map<std::string, torch::Tensor>()> full_parameters;
};

/// The reference: `module` trained by `optimizer` on the whole batch, with
/// the loss `loss_of(batch)` (a scalar tensor built from module's forward).
Trainee plain_trainee(std::shared_ptr<torch::nn::Module> module,
                      std::shared_ptr<torch::optim::Optimizer> optimizer,
                      std::function<torch::Tensor(const Batch&)> loss_of);

/// Every parameter of `module` by its full name, detached, on the CPU.
std::map<std::string, torch::Tensor> named_parameter_copies(const torch::nn::Module& module);

struct EquivalenceOptions {
  /// Optimizer steps each trainee takes.
  int steps = 5;
  /// Largest relative difference allowed (1e-5 suits fp32; low-precision
  /// compute needs looser values, e.g. 2e-2 for bf16 losses).
  double tolerance = 1e-5;
  /// Judge the final parameters too (not only the losses).
  bool judge_parameters = true;
  /// Throws UsageError naming the field when a value is out of range.
  void validate() const;
};

struct EquivalenceReport {
  std::vector<double> reference_losses, parallel_losses;
  double max_rel_loss_diff = 0;
  double max_rel_param_diff = 0;
  std::string worst_param;  // the parameter with the largest difference
  bool pass = false;        // the same verdict on every rank
  /// "verify: <what> steps=K max_rel_loss_diff=X max_rel_param_diff=Y PASS" (or FAIL).
  std::string summary_line(const std::string& what) const;
};

/// Trains `make_reference()` and then `make_parallel()` for options.steps
/// steps on batches(0), batches(1), ... and compares them. Collective over
/// `world`: every rank runs both (the reference is computed redundantly on
/// each rank, so it needs no communication); the verdict is agreed over
/// `world`. RuntimeFailure when the parallel run lacks a parameter of the
/// reference or has one of another shape.
EquivalenceReport check_equivalence(std::shared_ptr<Communicator> world,
                                    const std::function<Batch(int64_t step)>& batches,
                                    const std::function<Trainee()>& make_reference,
                                    const std::function<Trainee()>& make_parallel,
                                    EquivalenceOptions options = {});

}  // namespace paratorch
