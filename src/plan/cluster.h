// src/plan/cluster.h — the machine a plan is made for: a cluster file's
// [cluster] table (docs/plan.md).
//
// Contract keys (scripts build on them): nodes, gpus_per_node, peak_tflops
// (a number for the run's precision, or a table per dtype: { bf16 = 312,
// fp32 = 19.5 }), memory_gb, intra_node_gbps and inter_node_gbps (GB/s per
// accelerator and direction), intra_node_latency_us, inter_node_latency_us.
// Optional keys, with defaults: memory_gbps (the accelerator's memory
// bandwidth, for the optimizer step), elementwise_gbps (the rate of a layer's
// element-wise work, in the cost model's bytes: plan/predict.h; default
// memory_gbps), gemm_efficiency and gemm_half_dim (the
// fraction of peak a wide matrix multiply reaches, and the sharded hidden
// size at which it reaches half of that: plan/transformer_cost.h), and
// cores_per_node (CPU clusters: the cores a node's ranks share; a layout
// with more ranks on a node than that takes at least the ranks' mean compute
// times ranks/cores, since ranks that wait in a pipeline's bubble leave
// their core to the others; 0, the default, gives every accelerator its own).
//
// Example:
//   plan::Cluster c = plan::load_cluster("examples/clusters/selene.toml");
//   double flops = c.peak_flops(torch::kBFloat16);
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

namespace paratorch::plan {

struct Cluster {
  int nodes = 1;
  int gpus_per_node = 1;
  /// Peak TFLOP/s per accelerator, by precision word ("bf16", "fp16", "fp32").
  std::map<std::string, double> peak_tflops;
  double memory_gb = 80;
  double intra_node_gbps = 300, inter_node_gbps = 25;
  double intra_node_latency_us = 5, inter_node_latency_us = 10;
  double memory_gbps = 2000;
  double elementwise_gbps = 0;  // 0: memory_gbps
  double gemm_efficiency = 0.75;
  double gemm_half_dim = 256;
  int cores_per_node = 0;

  /// The share of its peak each of `ranks_per_node` ranks on a node gets
  /// while all compute: min(1, cores_per_node / ranks_per_node), 1 when
  /// cores_per_node is 0.
  double compute_share(int ranks_per_node) const;

  int gpus() const { return nodes * gpus_per_node; }
  /// Bytes per second of a layer's element-wise work.
  double elementwise_bytes_per_s() const { return (elementwise_gbps > 0 ? elementwise_gbps : memory_gbps) * 1e9; }
  /// Peak FLOP/s in `precision` ("fp32" | "bf16" | "fp16"); UsageError
  /// naming the cluster file's key when it gives none for it.
  double peak_flops(const std::string& precision) const;
  /// UsageError naming the key and what to change for a missing, zero or
  /// negative value.
  void validate() const;
};

/// Reads the [cluster] table of the TOML file at `path`; UsageError naming
/// the file and the key for a missing file, an unknown key or a bad value.
Cluster load_cluster(const std::string& path);
/// The same from TOML text (`origin` names it in messages).
Cluster cluster_from_string(const std::string& toml_text, const std::string& origin = "text");

}  // namespace paratorch::plan
