// src/parallel/mixed_precision/precision.h — [train] precision names, dtypes and what this build supports.
//
// Mixed precision keeps fp32 master weights and computes in bf16 or fp16.
// libtorch 1.13's CPU kernels lack fp16 (Half) for matrix products, layer
// norm, GELU and softmax. mlp and gpt compute through ops/ops.h, which
// then runs each of those operations in fp32 between fp16 tensors; any other
// model in fp16 on such a build is refused up front with a clear message
// (probed, not guessed from the version). bf16 works on CPU.
#pragma once
#include "models/model.h"

#include <torch/torch.h>

#include <string>

namespace paratorch::mixed_precision {

/// kFloat, kBFloat16 or kHalf for "fp32", "bf16", "fp16"; UsageError naming
/// `field` (the option or key the word came from) otherwise.
torch::ScalarType precision_dtype(const std::string& precision, const std::string& field);

/// "fp32" | "bf16" | "fp16" for kFloat, kBFloat16, kHalf (the config's
/// spelling, for messages and reports); the dtype's own name otherwise.
std::string precision_name(torch::ScalarType dtype);

/// UsageError naming `field` unless `dtype` is one training runs in
/// (kFloat, kBFloat16, kHalf).
void require_training_dtype(torch::ScalarType dtype, const std::string& field);

/// UsageError naming `field` when `model` cannot run its operations
/// (matmul, layer norm, softmax, GELU) on `device` in `dtype`.
void require_precision_supported(torch::ScalarType dtype, torch::Device device, const models::BundledModel& model,
                                 const std::string& field);

}  // namespace paratorch::mixed_precision
