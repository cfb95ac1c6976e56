// src/plan/transformer_cost.h — what one step of a bundled model costs in
// arithmetic and memory, by formula (nothing is allocated, so any size works).
//
// Two families: Megatron-LM's GPT (`gpt`): l layers of hidden size h with a
// heads, sequence length s, vocabulary V; and the bundled `mlp`, a stack of
// the transformer's MLP sub-layers (models/mlp.h): an input projection
// d_in -> h, l pre-LayerNorm blocks h -> 4h -> h, a classifier h -> C, each
// sample one "token" (s = 1, no attention). GPT formulas:
//  - parameters (Narayanan et al., SC'21, §5.1):
//      P = 12 l h^2 (1 + 13/(12 h) + (V + s)/(12 l h))
//  - FLOPs of one step over a global batch of B sequences (same paper, eq. 3):
//      forward of a layer 24 B s h^2 + 4 B s^2 h, the logits 2 B s h V;
//      backward twice the forward; full activation recomputation runs each
//      layer's forward once more, so a step costs
//      96 B s l h^2 (1 + s/(6h) + V/(16 l h)) with recomputation and
//      72 B s l h^2 (1 + s/(6h) + V/(12 l h)) without.
//    Published TFLOP/s count the former when recomputation is on; MFU (model
//    FLOPs utilization) counts the latter always.
//  - activations kept for backward by one layer for a micro-batch of b
//    sequences, in bytes with 16-bit activations (Korthikanti et al., 2022,
//    "Reducing Activation Recomputation in Large Transformer Models", §4):
//      s b h (34 + 5 a s / h) / t   with tensor and sequence parallelism t,
//      2 s b h / t                  with full recomputation (the layer input).
//  - GEMM efficiency: the fraction of peak a matrix multiply reaches grows
//    with its narrowest dimension n:
//      eff(n) = gemm_efficiency * n / (n + gemm_half_dim)
//    n is the sharded hidden size h/t for the layer's dense products and the
//    head size h/a for the attention products (whose share, s/(6h) of the
//    dense FLOPs, is why small models run further below peak).
//    (a saturating fit; the two constants come from the cluster file and are
//    calibrated on measured runs: docs/plan.md).
//  - 32-bit activations (precision fp32) keep twice the bytes.
// The mlp, by the same rules: P = l(8h^2 + 7h) + (d_in + 1)h + (h + 1)C + 2h;
// a block's forward 16 b h^2 FLOPs, the classifier 2 b h C, the input
// projection 2 b d_in h (its backward computes only the weight gradient);
// a block keeps 20 b h bytes at 16 bits (the LayerNorm and first linear's
// inputs, 2 b h each, the GELU's and second linear's, 8 b h each).
#pragma once
#include "models/model.h"

#include <cstdint>

namespace paratorch::plan {

struct ModelShape {
  enum class Family { kGpt, kMlp };
  int64_t layers = 1, hidden = 1, heads = 1, seq = 1, vocab = 1;  // mlp: heads = seq = 1, vocab = classes
  int64_t input_dim = 0;                                          // mlp: d_in
  Family family = Family::kGpt;
  /// The shape of a bundled gpt or mlp; UsageError for another family.
  static ModelShape from(const models::ModelConfig& config);
  double parameters() const;
  /// FLOPs of one step over `global_batch` sequences (see above).
  double step_flops(int64_t global_batch, bool recompute) const;
  /// Model FLOPs (no recomputation) of one step: what MFU counts.
  double model_flops(int64_t global_batch) const { return step_flops(global_batch, false); }
  /// Forward FLOPs of one layer for `b` sequences, on one of `tp` shards.
  double layer_forward_flops(int64_t b, int tp) const;
  /// The part of it in the attention score and context products
  /// (4 b s^2 h / tp): matrix multiplies whose inner dimension is the head
  /// size h/a, not the hidden size.
  double attention_forward_flops(int64_t b, int tp) const;
  /// Forward FLOPs of the output logits for `b` sequences, on one of `tp` shards.
  double logits_forward_flops(int64_t b, int tp) const;
  /// Forward FLOPs of the mlp's input projection for `b` samples (0 for gpt,
  /// whose embedding is a lookup).
  double input_forward_flops(int64_t b) const;
  /// Bytes one layer keeps for backward for a micro-batch of `b` (above),
  /// with `value_bytes`-byte activations (2 for bf16/fp16, 4 for fp32).
  double layer_activation_bytes(int64_t b, int tp, bool recompute, double value_bytes = 2) const;
};

/// Fraction of peak a GEMM whose narrowest dimension is `n` reaches.
double gemm_efficiency(double n, double max_efficiency, double half_dim);

}  // namespace paratorch::plan
