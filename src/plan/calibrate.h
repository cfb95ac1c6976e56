// src/plan/calibrate.h — measures this machine and describes it as a cluster
// file (`paratorch plan --calibrate`, docs/plan.md).
//
// What it measures, on every rank at once (so ranks that share a node share
// its memory bandwidth as a run's ranks do), and what it fits:
//  - peak_tflops: the fastest square matrix multiply (1024^3) in the run's
//    precision;
//  - gemm_efficiency, gemm_half_dim: matrix multiplies at the model's shapes,
//    forward and backward (its dense products at tp = 1, 2, 4; its attention
//    products at the head size; the micro-batch rows) and the least-squares
//    fit of
//    eff(n) = E n / (n + H) in its linear form 1/eff = 1/E + (H/E) / n,
//    n each product's narrowest dimension (plan/transformer_cost.h);
//  - memory_gbps: paratorch's optimizer stepping 4M parameters (with the
//    gradient norm before and the zeroing after), as the bandwidth at which
//    the cost model's bytes per parameter (plan/predict.h) take as long;
//  - elementwise_gbps: one of the bundled model's own layers, forward and
//    backward, at the micro-batch; what it takes beyond its products (on the
//    fitted curve) is its element-wise work (LayerNorm, GELU, softmax,
//    reshapes, residuals), and elementwise_gbps is the bandwidth at which the cost
//    model's element-wise term (the layer's stored-activation bytes, once per
//    forward and twice per backward: plan/predict.h) takes that long. So a
//    layer at the calibration's micro-batch costs what it measured; other
//    micro-batch sizes, tp, the pipeline, the links and the ranks' sharing
//    of cores are predicted;
//  - intra_node_gbps and intra_node_latency_us: all-reduces and
//    point-to-point transfers between the ranks at sizes from 4 KiB to
//    8 MiB, through paratorch's own communicator, fitted by least squares
//    (in relative error) to the alpha-beta model of plan/comm_cost.h.
// One node has no inter-node link: the file repeats the intra-node values
// there and says so.
#pragma once
#include "plan/cluster.h"
#include "plan/transformer_cost.h"

#include <paratorch/communicator.h>

#include <string>
#include <vector>

namespace paratorch::plan {

struct CalibrateOptions {
  ModelShape model;
  /// Rows of the micro-batch products (tokens of one micro-batch).
  int64_t microbatch_tokens = 512;
  std::string precision = "fp32";
  std::string optimizer = "adamw";  // adamw | sgd
  /// The cluster file's gpus_per_node: the most ranks a layout may put on
  /// this node (they share its cores_per_node cores).
  int ranks_per_node = 1;
  int cores_per_node = 1;
  double memory_gb = 1;
  /// Each measurement repeats the operation for at least this long, and
  /// the median of `rounds` such timings counts.
  double min_seconds = 0.02;
  int rounds = 5;
  void validate() const;
};

struct GemmSample {
  int64_t rows = 0, inner = 0, cols = 0, batch = 1;
  double flops_per_s = 0;
  double narrow() const;
};

struct CommSample {
  bool p2p = false;  // else an all-reduce over every rank
  int ranks = 2;
  double bytes = 0, seconds = 0;
};

struct Calibration {
  Cluster cluster;
  std::vector<GemmSample> gemms;
  std::vector<CommSample> comms;
};

/// eff(n) = E n / (n + H) fitted to `samples` against `peak_flops`;
/// returns {E (at most 1), H (at least 0)}.
std::pair<double, double> fit_gemm_curve(const std::vector<GemmSample>& samples, double peak_flops);
/// {alpha seconds, beta bytes/s} fitted to `samples` (plan/comm_cost.h's
/// ring all-reduce and point-to-point formulas). UsageError with fewer than
/// two distinct sizes.
std::pair<double, double> fit_alpha_beta(const std::vector<CommSample>& samples);

/// Measures and fits (above). `comm` may be null or of size 1: the link
/// keys then keep the defaults and the file says they were not measured.
/// Every rank of `comm` must call it; rank 0's measurements count.
Calibration calibrate(const CalibrateOptions& options, Communicator* comm);

/// The cluster file for `calibration`, with comments saying what was
/// measured and how (`paratorch plan --calibrate --out C.toml` writes it).
std::string cluster_toml(const Calibration& calibration, const std::string& precision);

}  // namespace paratorch::plan
