// src/models/model.h — what every bundled model provides, and the factory.
//
// A bundled model is a torch::nn::Module that also knows how to initialize
// itself layout-independently (init_spec per parameter name) and how to
// compute its loss on a Batch. Models never know the layout: tensor
// parallelism reaches them only as a TensorParallelContext (tp group, or none),
// which their tp layers consult; each parameter then reports its ShardSpec.
#pragma once
#include "tensor_parallel/context.h"
#include "tensor_parallel/shard.h"
#include <paratorch/init.h>

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace paratorch::models {

/// The [model] section of the config.
struct ModelConfig {
  std::string name = "gpt";  // a registered family (registry.h): gpt | mlp | cnn | mf
  int n_layers = 4;
  int d_model = 256;
  int n_heads = 4;           // gpt
  int seq_len = 128;         // gpt
  int vocab_size = 256;      // gpt (byte-level)
  int d_in = 784;            // mlp
  int n_classes = 10;        // mlp, cnn
  int n_users = 2000;        // mf: rows of the user table
  int n_items = 1000;        // mf: rows of the item table
  int n_factors = 16;        // mf: embedding width
  /// Throws UsageError naming the bad key (the family's own checks: registry.h).
  void validate() const;
};

/// Inputs and targets of some samples (for gpt: token windows and the next tokens).
struct Batch {
  torch::Tensor input;
  torch::Tensor target;
  int64_t size() const { return input.size(0); }
  /// On `device`, a floating-point input cast to `compute` (the engines'
  /// compute dtype; integer inputs such as tokens stay as they are).
  Batch to(torch::Device device, torch::ScalarType compute) const;
};

/// One piece of a model in forward order, for the pipeline partitioner:
/// the model's forward equals chaining every block's forward. A block owns
/// the parameters under its name prefixes; `shared` names parameters it uses
/// but an earlier block owns (gpt's output head is tied to transformer.wte).
struct ModelBlock {
  std::string name;                     // "transformer.h.0"
  std::vector<std::string> parameters;  // full names it owns
  std::vector<std::string> shared;      // full names it uses but does not own
  std::function<torch::Tensor(const torch::Tensor&)> forward;
};

class BundledModel : public torch::nn::Module {
 public:
  /// Logits for `input`.
  virtual torch::Tensor forward(const torch::Tensor& input) = 0;
  /// Mean loss over every prediction in the batch.
  virtual torch::Tensor loss(const Batch& batch) = 0;
  /// loss() from an output already computed: loss(b) == criterion(forward(b.input), b).
  /// The pipeline needs it apart, on the last stage. Default: cross-entropy
  /// of the last dimension's logits (gpt, mlp, cnn).
  virtual torch::Tensor criterion(const torch::Tensor& output, const Batch& batch);
  /// How parameter `name` (full dotted name) is initialized.
  virtual InitSpec init_spec(const std::string& name, const torch::Tensor& param) const = 0;
  /// Layout-independent initialization from `seed`: each parameter's full
  /// tensor, sliced to this rank's shard (shard_specs()).
  void initialize(uint64_t seed);
  /// initialize() for the named parameters only: ZeRO-3 initializes one
  /// unit at a time and shards it at once, so no rank ever holds the whole
  /// model initialized (its peak memory is one unit, not the model).
  void initialize(uint64_t seed, const std::vector<std::string>& names);
  /// How every parameter is split over the tp group, by full name
  /// (replicated parameters get dim = -1).
  std::map<std::string, tensor_parallel::ShardSpec> shard_specs() const;
  /// The model as an ordered list of blocks (see ModelBlock).
  virtual std::vector<ModelBlock> blocks() = 0;
  /// True when all of forward's arithmetic goes through ops/ops.h, so fp16
  /// runs even on a CPU libtorch without Half kernels (mlp, gpt).
  virtual bool computes_through_ops() const { return false; }

 protected:
  /// A block owning every parameter whose name starts with one of `prefixes`.
  ModelBlock make_block(std::string name, const std::vector<std::string>& prefixes,
                        std::function<torch::Tensor(const torch::Tensor&)> forward) const;
  /// Whole parameter `name` whose gradient is a partial sum over the tp
  /// group (used on a slice of the sequence under sequence parallelism).
  virtual bool partial_grad(const std::string& /*name*/) const { return false; }
};

/// UsageError when `config`'s model cannot run with `tp` ranks of tensor
/// parallelism (no tp layers, or a size tp does not divide); needs no tp
/// group, so the CLI checks it before MPI starts. No-op for tp = 1.
void check_tensor_parallel(const ModelConfig& config, int tp, bool sequence_parallel);

/// The model of `config`; with an active `tp` context its layers hold this
/// rank's shards (gpt and mf; UsageError for the others or sizes that tp
/// does not divide).
std::shared_ptr<BundledModel> make_model(const ModelConfig& config,
                                         const tensor_parallel::TensorParallelContext& tp = {});

}  // namespace paratorch::models
