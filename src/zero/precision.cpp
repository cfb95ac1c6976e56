// src/zero/precision.cpp — see precision.h.
#include "zero/precision.h"

#include <paratorch/errors.h>

namespace paratorch::zero {

torch::ScalarType precision_dtype(const std::string& precision) {
  if (precision == "fp32") return torch::kFloat;
  if (precision == "bf16") return torch::kBFloat16;
  if (precision == "fp16") return torch::kHalf;
  throw UsageError("paratorch: [train] precision = \"" + precision + "\"; use \"fp32\", \"bf16\" or \"fp16\"");
}

void require_precision_supported(const std::string& precision, torch::Device device) {
  const auto dtype = precision_dtype(precision);
  if (dtype == torch::kFloat) return;
  try {
    // One of each operation the bundled models use, forward and backward.
    auto opts = torch::TensorOptions().dtype(dtype).device(device);
    auto x = torch::ones({2, 4}, opts).requires_grad_(true);
    auto w = torch::ones({4, 4}, opts);
    auto h = torch::layer_norm(torch::gelu(torch::addmm(w.narrow(0, 0, 1), x, w)), {4});
    auto y = torch::cross_entropy_loss(torch::softmax(h, -1).to(torch::kFloat), torch::zeros({2}, torch::kLong));
    y.backward();
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    if (auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
    throw UsageError("paratorch: [train] precision = \"" + precision + "\" is not supported on " + device.str() +
                     " by this libtorch (" + TORCH_VERSION + "): " + what +
                     (device.is_cpu() ? "; use \"bf16\" on CPU (or fp16 on a CUDA device)" : "; use \"bf16\" or \"fp32\""));
  }
}

}  // namespace paratorch::zero
