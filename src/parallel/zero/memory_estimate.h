// src/parallel/zero/memory_estimate.h — per-rank memory of a layout, before anything is allocated.
//
// Model state follows ZeRO's accounting (Rajbhandari et al., 2019, §3.1 and
// Figure 1): Ψ parameters, N_d data-parallel ranks, parameters and gradients
// in the compute precision (c bytes each), K bytes of optimizer state per
// parameter. Mixed precision keeps an fp32 master copy, counted in K (Adam:
// K = 4 master + 4 m + 4 v = 12); fp32 training has no separate master
// (Adam: K = 8, so 4 + 4 + 8 bytes per parameter).
//   stage 0: (c + c + K)Ψ     stage 1: (c + c)Ψ + KΨ/N_d
//   stage 2: cΨ + (c + K)Ψ/N_d     stage 3: (c + c + K)Ψ/N_d
// Activations are a rough figure for planning, each model family's own
// (ModelFamily::activation_bytes, src/models/registry.h): gpt after Korthikanti et al.
// (2022) §4.1, s·b·h·(34 + 5·a·s/h) bytes per layer at 2-byte precision
// (scaled by c/2), with stage 3 keeping only each block's input (it
// recomputes blocks in backward); mlp about 4·b·h·c per layer.
#pragma once
#include "models/model.h"

#include <cstdint>
#include <string>

namespace paratorch::zero {

struct MemoryEstimate {
  double parameters = 0, gradients = 0, optimizer = 0, activations = 0;  // bytes
  double model_state() const { return parameters + gradients + optimizer; }
  /// "params 12.0 MiB, grads ..., optimizer ..., activations ~... (total ...)"
  std::string line() const;
};

/// Bytes per parameter of optimizer state (K above) for [optim] name and precision.
double optimizer_bytes_per_parameter(const std::string& optimizer, const std::string& precision);

/// What the estimate depends on besides the parameter count and dp.
struct MemoryEstimateOptions {
  models::ModelConfig model;       // the family's activation formula and its sizes
  int64_t global_batch = 32;       // samples per step over the whole job
  int microbatches = 1;            // per replica: activations are those of one micro-batch
  int stage = 0;                   // ZeRO stage 0..3
  std::string optimizer = "adamw"; // adamw | sgd
  std::string precision = "fp32";  // fp32 | bf16 | fp16
};

/// The estimate for `options` with `parameters` parameters over `dp` ranks.
MemoryEstimate estimate_memory(const MemoryEstimateOptions& options, int64_t parameters, int dp);

}  // namespace paratorch::zero
