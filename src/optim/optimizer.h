// src/optim/optimizer.h — AdamW and SGD with momentum over named parameters,
// with state that checkpoints by parameter name.
//
// paratorch owns its optimizers (instead of torch::optim) for two reasons:
// the state must be saved and restored by parameter *name* (a checkpoint
// written by one layout resumes in another; libtorch keys state by tensor
// address, differently across versions), and ZeRO (parallel/zero/sharded_optimizer.h) shards
// exactly this state. The update rules are PyTorch's, to the operation:
//   AdamW (Loshchilov & Hutter, 2019):  p -= lr·wd·p;  m = β1·m + (1-β1)·g;
//     v = β2·v + (1-β2)·g²;  p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + ε)
//   SGD:  d = g + wd·p;  b = μ·b + d (b = d at the first step);  p -= lr·b
// Weight decay applies to matrices and embeddings (dim ≥ 2) only, never to
// biases or norm gains (GPT-2/nanoGPT practice). AdamW on fp32 CPU tensors
// runs as one fused pass (fused_adamw.h).
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace paratorch::optim {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

enum class OptimizerKind { kAdamW, kSgd };

/// What make_optimizer builds. The learning rate is not here: it is given to
/// each step (the schedule owns it).
struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kAdamW;
  double weight_decay = 0.1;  // decoupled (AdamW) or L2 (SGD); dim >= 2 only
  /// UsageError naming the field when weight_decay < 0 or not finite.
  void validate() const;
};

/// "adamw" | "sgd", as the config and checkpoints spell the kind.
const char* optimizer_kind_name(OptimizerKind kind);

/// One tensor of an optimizer's state as this rank holds it (sharded
/// checkpoints write these without gathering).
struct LocalState {
  std::string key;           // as state_tensors() names it: "<parameter>.<state>", "step", ...
  torch::Tensor data;
  int64_t flat_offset = -1;  // >= 0: elements [flat_offset, +numel) of the parameter's
                             // flattened tensor on this rank (a ZeRO piece); -1: all of it
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  /// One update of every parameter that has a gradient, at learning rate
  /// `lr`, as if each gradient were first multiplied by `grad_scale` (the
  /// clip coefficient, grad_clip.h): the factor is folded into the update's
  /// own pass over the gradient, and .grad is left as it was.
  virtual void step(double lr, double grad_scale = 1.0) = 0;
  /// Every state tensor under "<parameter>.<state>", plus "step".
  virtual std::map<std::string, torch::Tensor> state_tensors() const = 0;
  /// The inverse; throws RuntimeFailure naming a missing or mis-shaped tensor.
  virtual void load_state_tensors(const std::map<std::string, torch::Tensor>& state) = 0;
  /// The state as this rank holds it, with no communication. Default:
  /// state_tensors() whole (wrappers that gather or shard override it).
  virtual std::vector<LocalState> local_state() const;
  /// Steps taken so far.
  int64_t steps_taken() const { return steps_; }

 protected:
  int64_t steps_ = 0;
};

/// The optimizer `options` name, over `params` (names are the model's).
/// `decay[i]` says whether params[i] gets weight decay; empty means the rule
/// above (dim >= 2). ZeRO passes it because its shard pieces are 1-D slices
/// of parameters whose own shape decides.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerOptions& options, NamedTensors params,
                                          std::vector<bool> decay = {});

/// Sets every parameter's gradient to zero in place (keeping DDP's bucket views).
void zero_gradients(const NamedTensors& params);

}  // namespace paratorch::optim
