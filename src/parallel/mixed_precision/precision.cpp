// src/parallel/mixed_precision/precision.cpp — see precision.h.
#include "parallel/mixed_precision/precision.h"

#include "ops/ops.h"
#include <paratorch/errors.h>

namespace paratorch::mixed_precision {

torch::ScalarType precision_dtype(const std::string& precision, const std::string& field) {
  if (precision == "fp32") return torch::kFloat;
  if (precision == "bf16") return torch::kBFloat16;
  if (precision == "fp16") return torch::kHalf;
  throw UsageError("paratorch: " + field + " = \"" + precision + "\"; use \"fp32\", \"bf16\" or \"fp16\"");
}

std::string precision_name(torch::ScalarType dtype) {
  if (dtype == torch::kFloat) return "fp32";
  if (dtype == torch::kBFloat16) return "bf16";
  if (dtype == torch::kHalf) return "fp16";
  return c10::toString(dtype);
}

void require_training_dtype(torch::ScalarType dtype, const std::string& field) {
  if (dtype != torch::kFloat && dtype != torch::kBFloat16 && dtype != torch::kHalf)
    throw UsageError("paratorch: " + field + " = " + c10::toString(dtype) +
                     " is no training dtype; use torch::kFloat, torch::kBFloat16 or torch::kHalf");
}

namespace {

// One of each operation the bundled models use, forward and backward, through
// ops/ops.h as the models call them; a c10::Error's first line otherwise.
std::string probe_failure(torch::ScalarType dtype, torch::Device device, bool through_ops) {
  try {
    auto opts = torch::TensorOptions().dtype(dtype).device(device);
    auto x = torch::ones({2, 4}, opts).requires_grad_(true);
    auto w = torch::ones({4, 4}, opts), b = torch::ones({4}, opts);
    torch::nn::LayerNorm ln(torch::nn::LayerNormOptions({4}));
    ln->to(device, dtype);
    auto h = through_ops ? ops::layer_norm(ln, ops::softmax(ops::gelu(ops::linear(x, w, b)), -1))
                         : ln(torch::softmax(torch::gelu(torch::nn::functional::linear(x, w, b)), -1));
    torch::cross_entropy_loss(h.to(torch::kFloat), torch::zeros({2}, torch::kLong)).backward();
    return "";
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    if (auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
    return what;
  }
}

}  // namespace

void require_precision_supported(torch::ScalarType dtype, torch::Device device, const models::BundledModel& model,
                                 const std::string& field) {
  if (dtype == torch::kFloat) return;
  const std::string failure = probe_failure(dtype, device, model.computes_through_ops());
  if (failure.empty()) return;
  const bool cpu_half = device.is_cpu() && dtype == torch::kHalf;
  throw UsageError("paratorch: " + field + " = \"" + precision_name(dtype) + "\" is not supported on " + device.str() +
                   " by this libtorch (" + TORCH_VERSION + ") for this model: " + failure +
                   (cpu_half ? "; use \"bf16\" on CPU (fp16 on CPU runs for mlp and gpt, or on a CUDA device)"
                             : "; use \"bf16\" or \"fp32\""));
}

}  // namespace paratorch::mixed_precision
