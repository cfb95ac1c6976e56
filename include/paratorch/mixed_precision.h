// paratorch/mixed_precision.h — mixed-precision training for any torch::nn::Module:
// a precision policy, fp32 master weights and a dynamic loss scaler with the
// semantics of torch.cuda.amp.GradScaler.
//
// Mixed precision (Micikevicius et al., 2018, "Mixed Precision Training"):
// the model computes in bf16 or fp16 while the optimizer updates fp32
// "master" weights, since an update lr·g is often below the 8- or 11-bit
// mantissa of the weight and would round away. fp16 also needs the loss
// multiplied by a scale S so small gradients do not flush to zero; the
// gradients are divided by S before the update, and a step whose gradients
// hold inf/NaN is skipped while S backs off.
//
// Example (PyTorch: scaler = GradScaler(); scaler.scale(loss).backward();
// scaler.step(opt); scaler.update()):
///   paratorch::MasterWeights masters(model, torch::kHalf);   // model now fp16
///   torch::optim::AdamW opt(masters.parameters(), 1e-3);       // steps the fp32 masters
///   paratorch::LossScaler scaler;
///   for (...) {
///     opt.zero_grad();
///     scaler.scale(loss_of(model->forward(x.to(torch::kHalf)))).backward();
///     masters.widen_gradients();            // fp16 .grad -> fp32 masters' .grad
///     if (scaler.step(opt)) masters.copy_to_model();  // unscales; skips on inf/NaN
///     scaler.update();                      // backoff, or growth after growth_interval clean steps
///   }
//
// With DistributedDataParallel, let DDP keep fp32 main gradients, so
// micro-batches accumulate and replicas average in fp32 (Megatron-LM's
// main_grad), and hand them to the masters:
///   paratorch::MasterWeights masters(model, torch::kBFloat16);
///   paratorch::DDPOptions o;
///   o.main_grad_dtype = torch::kFloat;
///   paratorch::DistributedDataParallel ddp(model, world.comm(), o);
///   masters.use_gradients(ddp.main_grads());
///   ... loss.backward(); masters.widen_gradients(); opt.step(); masters.copy_to_model();
// ZeroRedundancyOptimizer and fully_shard (<paratorch/zero.h>) take a
// MixedPrecisionPolicy and keep their fp32 masters in their shards.
#pragma once
#include <paratorch/communicator.h>

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace paratorch {

/// Which dtypes a sharded model computes and reduces in (PyTorch FSDP's
/// MixedPrecision). Optimizer state and master weights stay fp32 always.
struct MixedPrecisionPolicy {
  /// Parameters (and so forward/backward compute) in this dtype: kFloat,
  /// kBFloat16 or kHalf.
  torch::ScalarType param_dtype = torch::kFloat;
  /// Gradients are reduced over the data-parallel group in this dtype (a
  /// 16-bit reduction rounds each rank's gradient and the result); widened
  /// to fp32 afterwards.
  torch::ScalarType reduce_dtype = torch::kFloat;
  /// Throws UsageError naming the field when a dtype is not a float type
  /// paratorch supports.
  void validate() const;
};

/// fp32 masters of a module's parameters, for a module kept whole (no ZeRO).
class MasterWeights {
 public:
  /// Clones the module's (fp32) parameters as masters and casts the module's
  /// parameters to `dtype` in place (the modules keep their tensors).
  MasterWeights(const std::shared_ptr<torch::nn::Module>& module, torch::ScalarType dtype);
  ~MasterWeights();
  MasterWeights(const MasterWeights&) = delete;
  MasterWeights& operator=(const MasterWeights&) = delete;

  /// The fp32 masters (build the optimizer over these).
  std::vector<torch::Tensor> parameters() const;
  /// The masters by the module's parameter names.
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() const;
  /// The masters' gradients are these fp32 tensors, one per module
  /// parameter in parameters() order (DistributedDataParallel::main_grads()
  /// with DDPOptions::main_grad_dtype = torch::kFloat); an undefined entry
  /// keeps widening. UsageError on a wrong dtype or shape.
  void use_gradients(const std::vector<torch::Tensor>& fp32_gradients);
  /// Every master's .grad = its module parameter's gradient widened to fp32
  /// (zero where it had none), or its use_gradients tensor itself; the
  /// module's gradients are dropped.
  void widen_gradients();
  /// The module's parameters = the masters rounded to the compute dtype.
  void copy_to_model();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct LossScalerOptions {
  /// GradScaler's defaults.
  double initial_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int growth_interval = 2000;
  /// Throws UsageError naming the bad field.
  void validate() const;
};

/// Dynamic loss scaling with GradScaler's semantics: scale(loss) multiplies
/// by S; step() divides the gradients by S and steps unless one of them is
/// inf/NaN; update() halves S (backoff_factor) after a skipped step and
/// doubles it (growth_factor) after growth_interval clean steps in a row.
class LossScaler {
 public:
  explicit LossScaler(LossScalerOptions options = {});

  /// The current scale S (GradScaler::get_scale).
  double scale() const { return scale_; }
  /// loss · S.
  torch::Tensor scale(const torch::Tensor& loss) const;
  /// Divides every defined .grad of `params` by S and records whether any
  /// holds an inf/NaN. With `group`, the verdict is agreed over its ranks
  /// (collective: each rank passes its own gradients or shards). Returns
  /// whether a non-finite value was found.
  bool unscale(const std::vector<torch::Tensor>& params, Communicator* group = nullptr);
  /// unscale() over the optimizer's parameters (unless already unscaled
  /// since the last update()), then optimizer.step() when every gradient is
  /// finite. Returns whether it stepped.
  bool step(torch::optim::Optimizer& optimizer, Communicator* group = nullptr);
  /// Moves S after a step according to the last unscale()'s verdict.
  void update();
  /// The same with the verdict given: backoff and a skipped step when
  /// `found_non_finite`, else a clean step (growth after growth_interval of
  /// them). Returns whether the step may be taken.
  bool update(bool found_non_finite);

  int64_t skipped_steps() const { return skipped_; }
  /// {"loss_scale", "skipped_steps"} for a metrics log.
  std::map<std::string, double> metrics() const;
  /// GradScaler's state_dict: "loss_scaler.scale", ".clean_steps",
  /// ".skipped_steps". load_state() leaves the scaler as it is when the map
  /// has none of them (an fp32 run's checkpoint); RuntimeFailure when the
  /// scale is not > 0.
  std::map<std::string, torch::Tensor> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& state);

 private:
  LossScalerOptions options_;
  double scale_;
  int clean_ = 0;
  int64_t skipped_ = 0;
  bool unscaled_ = false, found_non_finite_ = false;
};

}  // namespace paratorch
