// src/parallel/mixed_precision/policy.cpp — MixedPrecisionPolicy's checks and
// the public MasterWeights (paratorch/mixed_precision.h), which is the
// engines' mixed_precision::MasterWeights behind a stable interface.
#include <paratorch/errors.h>
#include <paratorch/mixed_precision.h>

#include "parallel/mixed_precision/master_weights.h"

namespace paratorch {

namespace {

void require_float(torch::ScalarType dtype, const char* field) {
  if (dtype == torch::kFloat || dtype == torch::kBFloat16 || dtype == torch::kHalf) return;
  throw UsageError(std::string("paratorch: MixedPrecisionPolicy::") + field + " = " + c10::toString(dtype) +
                   "; use torch::kFloat, torch::kBFloat16 or torch::kHalf");
}

}  // namespace

void MixedPrecisionPolicy::validate() const {
  require_float(param_dtype, "param_dtype");
  require_float(reduce_dtype, "reduce_dtype");
}

struct MasterWeights::Impl {
  mixed_precision::MasterWeights masters;
};

MasterWeights::MasterWeights(const std::shared_ptr<torch::nn::Module>& module, torch::ScalarType dtype) {
  if (!module) throw UsageError("paratorch: MasterWeights needs a module (got null)");
  MixedPrecisionPolicy{dtype, torch::kFloat}.validate();
  mixed_precision::MasterWeights::Named named;
  for (const auto& item : module->named_parameters()) named.emplace_back(item.key(), item.value());
  impl_ = std::make_unique<Impl>(Impl{mixed_precision::MasterWeights(std::move(named), dtype)});
}

MasterWeights::~MasterWeights() = default;

std::vector<torch::Tensor> MasterWeights::parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& [name, t] : impl_->masters.tensors()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> MasterWeights::named_parameters() const {
  return impl_->masters.tensors();
}

void MasterWeights::use_gradients(const std::vector<torch::Tensor>& fp32_gradients) {
  const auto& named = impl_->masters.tensors();
  if (fp32_gradients.size() != named.size())
    throw UsageError("paratorch: MasterWeights::use_gradients got " + std::to_string(fp32_gradients.size()) +
                     " tensors for " + std::to_string(named.size()) + " parameters; pass one per module parameter");
  std::map<std::string, torch::Tensor> by_name;
  for (size_t i = 0; i < named.size(); ++i) by_name[named[i].first] = fp32_gradients[i];
  impl_->masters.use_gradients(std::move(by_name));
}

void MasterWeights::widen_gradients() { impl_->masters.widen_gradients(1.0); }

void MasterWeights::copy_to_model() { impl_->masters.copy_to_model(); }

}  // namespace paratorch
