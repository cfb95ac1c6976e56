// src/zero/precision.h — [train] precision names, dtypes and what this build supports.
//
// Mixed precision keeps fp32 master weights and computes in bf16 or fp16.
// libtorch 1.13's CPU kernels lack fp16 matrix products ("addmm_impl_cpu_"
// not implemented for 'Half'); fp16 on such a build is refused up front with
// a clear message (probed, not guessed from the version), bf16 works on CPU.
#pragma once
#include <torch/torch.h>

#include <string>

namespace paratorch::zero {

/// kFloat, kBFloat16 or kHalf for "fp32", "bf16", "fp16"; UsageError otherwise.
torch::ScalarType precision_dtype(const std::string& precision);

/// UsageError naming [train] precision when `device` cannot run the model's
/// operations (matmul, layer norm, softmax, GELU) in that precision.
void require_precision_supported(const std::string& precision, torch::Device device);

}  // namespace paratorch::zero
