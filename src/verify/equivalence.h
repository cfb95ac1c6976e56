// src/verify/equivalence.h — the layout-equivalence check behind `paratorch verify`.
//
// Runs K optimizer steps twice on the same global batches: once in the
// requested layout across the job's ranks — through train::make_engine and
// train::take_step, exactly as `paratorch train` steps — and once as the
// single-process reference on rank 0 (plain model, whole global batch, no
// paratorch parallel code at all). Compares, at one tolerance, the loss and
// the pre-clip global gradient norm of every step and every parameter at the
// end, and checks that every rank's replica of the parameters equals rank
// 0's. The central test (docs/verify.md): equal up to float summation order
// (1e-5 relative in fp32).
#pragma once
#include "train/config.h"
#include <paratorch/layout.h>
#include <paratorch/world.h>

#include <cstdint>
#include <string>
#include <vector>

namespace paratorch::verify {

struct VerifyOptions {
  /// Model, data source, global batch, layout and every [parallel] option,
  /// optimizer, seed: the run that is checked. [optim] lr is held constant.
  /// SGD (momentum 0.9) is verify's default optimizer because it is linear
  /// in the gradients, so summation-order noise stays at rounding level.
  /// AdamW divides by sqrt(v) + eps: a parameter whose exact gradient is zero
  /// (gpt's attention key bias — softmax ignores a shift shared by all keys)
  /// gets gradients of pure rounding noise (~4e-12 per element), which AdamW
  /// turns into steps of about lr * |g| / (|g| + eps) ~ 4e-4 lr — ~1e8 times
  /// the SGD step, with a sign set by summation order. Measured: dp=2 AdamW
  /// matches losses to 4e-8 but that bias only to ~1.7e-4.
  train::Config config;
  int steps = 3;
  /// Relative bound on every step's loss and pre-clip gradient norm (and on
  /// the final parameters when `judge_parameters`).
  double tolerance = 1e-5;
  /// Whether each final parameter must also agree within `tolerance`. Off
  /// for bf16/fp16 compute (docs/zero.md bounds the loss trajectory, 2e-2): a
  /// near-zero tensor such as a LayerNorm bias, built from 20 steps of
  /// low-precision gradients, differs by a few percent of its own small norm.
  /// Such runs are judged on training instead (the two fields below).
  bool judge_parameters = true;
  /// When > 0: the layout's loss must fall over the run, first step to last,
  /// by at least this fraction of the first loss. Must exceed `tolerance`, so
  /// that a run that does not train cannot pass on losses alone.
  double min_loss_fall = 0;
  /// When > 0: the whole model's distance to the reference's parameters,
  /// ||p - p_ref||, must be at most this times how far the reference moved
  /// them, ||p_ref - p_init||. Must be < 1: a frozen run (p = p_init) sits at
  /// exactly 1.
  double max_param_drift = 0;
  void validate() const;
};

/// Replicas of one model must agree to float rounding whatever the
/// precision: every rank applies the same reduced update.
constexpr double kReplicaTolerance = 1e-5;

/// verify's defaults for bundled model `name`: small shapes (quick on two
/// cores), its synthetic data, SGD lr 0.01 without weight decay or warm-up,
/// gradient clipping at norm 1 (so the layout's global norm is exercised).
/// UsageError listing the models it offers (those with synthetic data) for
/// any other `name`.
train::Config verify_config(const std::string& name);

/// Small model shapes for `verify --model NAME`.
models::ModelConfig small_model(const std::string& name);

/// One step of both runs (the name is historical: it carries the norms too).
struct StepLosses {
  double layout = 0, reference = 0;                      // losses
  double layout_grad_norm = 0, reference_grad_norm = 0;  // global, before clipping
};

struct VerifyResult {
  Layout layout;                   // resolved
  std::vector<StepLosses> losses;  // rank 0 only
  double max_rel_loss_diff = 0;
  double max_rel_param_diff = 0;
  double max_rel_grad_norm_diff = 0;
  std::string worst_param;
  /// Every rank's parameters against rank 0's: the worst relative difference,
  /// where it is, and how many ranks were compared (rank 0 only).
  double max_rel_replica_diff = 0;
  int replica_rank = 0;
  std::string replica_param;
  int replicas = 0;
  /// Relative fall of the layout's loss, first step to last, and
  /// ||p - p_ref|| / ||p_ref - p_init|| over the whole model (rank 0 only).
  double loss_fall = 0;
  double param_drift = 0;
  /// Why the check failed, one line per broken rule (rank 0 only).
  std::vector<std::string> failures;
  bool pass = false;  // agreed on every rank
  /// "verify: layout=... steps=K max_rel_loss_diff=X max_rel_param_diff=Y PASS"
  std::string summary_line() const;
  /// "checks: max_rel_grad_norm_diff=Z replicas=N max_rel_replica_diff=R
  /// loss_fall=F param_drift=D": what the summary line does not carry.
  std::string checks_line() const;
};

/// Collective over the world. `progress` prints per-step lines on rank 0.
VerifyResult run_equivalence(World& world, const VerifyOptions& options, bool progress);

}  // namespace paratorch::verify
