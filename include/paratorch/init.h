// paratorch/init.h — layout-independent parameter initialization.
//
// Every parameter's *full* tensor is drawn from a generator seeded by
// (global seed, the parameter's full name), never from a shared RNG stream.
// So the values do not depend on how many ranks exist, which ones build which
// layers, or in which order: a tensor-parallel shard is just a slice of the
// same full tensor a single process would create. This is what lets every
// layout reproduce the single-process run.
//
// Example:
///   paratorch::InitSpec spec = paratorch::InitSpec::normal(0.0, 0.02);
///   torch::Tensor w = paratorch::full_init(spec, {768, 768}, /*seed=*/1234, "h.0.attn.c_proj.weight");
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>

namespace paratorch {

struct InitSpec {
  enum class Kind { kNormal, kUniform, kConstant } kind = Kind::kConstant;
  double a = 0.0;  // normal: mean; uniform: low; constant: value
  double b = 0.0;  // normal: std;  uniform: high
  static InitSpec normal(double mean, double std) { return {Kind::kNormal, mean, std}; }
  static InitSpec uniform(double low, double high) { return {Kind::kUniform, low, high}; }
  static InitSpec constant(double value) { return {Kind::kConstant, value, 0.0}; }
};

/// 64-bit seed derived from (seed, name) with FNV-1a and a SplitMix64 finalizer.
uint64_t derive_seed(uint64_t seed, const std::string& name);

/// A CPU generator seeded by derive_seed(seed, name).
torch::Generator generator_for(uint64_t seed, const std::string& name);

/// The full fp32 CPU tensor of `shape` for parameter `name`.
torch::Tensor full_init(const InitSpec& spec, torch::IntArrayRef shape, uint64_t seed,
                        const std::string& name);

/// Overwrites every parameter of `module` with full_init(spec_of(name, p)).
/// Parameters are named as module.named_parameters() names them.
void init_parameters(torch::nn::Module& module, uint64_t seed,
                     const std::function<InitSpec(const std::string&, const torch::Tensor&)>& spec_of);

}  // namespace paratorch
