// src/plan/predict.h — one layout's predicted step time, throughput and
// memory per accelerator on a cluster (docs/plan.md).
//
// A step, as paratorch runs it:
//   each replica (dp) runs m = B / (dp * b) micro-batches of b sequences
//   through pp stages of l/pp layers, each layer split over tp;
//   per micro-batch and stage: forward, backward (2x the forward's FLOPs;
//   the element-wise work moves the layer's stored activations once per
//   pass at the memory bandwidth),
//   with recomputation a second forward; two tp all-reduces of the layer's
//   activations in each forward and in each backward (Megatron-LM's f/g);
//   ZeRO-3 all-gathers the stage's parameters for each forward and backward
//   and reduce-scatters its gradients, overlapped with the compute;
//   the stages' work is replayed through the schedule's own action lists
//   (parallel/pipeline/simulator.h), with activation transfers between
//   stages (1/tp of the activation when tp > 1: Megatron's scatter/gather);
//   ZeRO-3 recomputes each block's forward in backward, as paratorch's
//   stage 3 does (it keeps only block inputs);
//   ranks that outnumber a CPU node's cores (Cluster::cores_per_node) take
//   at least their mean compute times ranks/cores;
//   then the dp gradient reduction, overlapped with the last backward
//   bucket by bucket as DDP does (only what outlasts that backward, or the
//   last bucket, is exposed), the ZeRO 1-2 parameter all-gather, and the
//   optimizer step (memory-bound).
// Memory per accelerator: model states by ZeRO stage (Rajbhandari et al.,
// 2019, §5: 2 + 2 + 12 bytes per parameter for mixed-precision Adam), plus
// the activations of the micro-batches the schedule keeps in flight on its
// busiest rank (the simulator counts them), plus the last stage's logits.
#pragma once
#include "parallel/pipeline/simulator.h"
#include "plan/cluster.h"
#include "plan/transformer_cost.h"

#include <string>

namespace paratorch::plan {

/// What the config fixes: the model, the batch, the precision, the optimizer.
struct RunShape {
  ModelShape model;
  int64_t global_batch = 1;
  std::string precision = "bf16";         // fp32 | bf16 | fp16: compute and parameters
  std::string reduce_precision = "fp32";  // the dp gradient reduction's dtype
  std::string optimizer = "adamw";        // adamw | sgd
};

/// What the planner chooses.
struct PlanLayout {
  int dp = 1, pp = 1, tp = 1;
  int zero = 0;
  int64_t microbatch_size = 1;
  std::string schedule = "1f1b";  // gpipe | 1f1b | interleaved | zb-h1 | zb-v (ignored at pp = 1)
  int virtual_stages = 1;         // interleaved's v; 1 for the others
  int chunks_per_rank() const;    // model chunks a rank holds: v, or 2 for zb-v's V
  bool recompute = false;  // implied by zero = 3: paratorch's stage 3 recomputes each block in backward
  int64_t microbatches(int64_t global_batch) const { return global_batch / (dp * microbatch_size); }
  std::string layout_text() const;    // "dp=A,pp=B,tp=C"
  std::string schedule_text() const;  // "none" at pp = 1, "interleaved-v2", ...
};

/// Bytes per accelerator.
struct MemoryBreakdown {
  double parameters = 0, gradients = 0, optimizer = 0, activations = 0;
  double model_states() const { return parameters + gradients + optimizer; }
  double total() const { return model_states() + activations; }
};

/// Seconds of one step, by where they go.
struct TimeBreakdown {
  double compute = 0;     // busiest stage's arithmetic
  double bubble = 0;      // pipeline idle time (and p2p waits) on that stage
  double tp_comm = 0;     // the tp all-reduces, not overlapped
  double p2p = 0;         // activation/gradient transfers on the critical path
  double dp_exposed = 0;  // dp reduction (and ZeRO all-gather) not hidden by backward
  double optimizer = 0;
};

struct Prediction {
  PlanLayout layout;
  double step_s = 0, tokens_per_s = 0, tflops_per_gpu = 0, mfu = 0;
  MemoryBreakdown memory;
  TimeBreakdown time;
  bool fits = true;
  double memory_over_gb = 0;  // by how much it misses the accelerator's memory
  pipeline::SimResult pipeline;  // the simulated step (pp > 1), seconds
};

/// Bytes of memory traffic per parameter of a step's update: the optimizer's
/// state, the parameter (and fp32 master), the gradient read by the update
/// and the norm and written by zeroing it.
double optimizer_bytes_per_parameter(const std::string& precision, const std::string& optimizer);

/// Model-state bytes per accelerator for `parameters` on it, replicated over
/// `dp` ranks and sharded by ZeRO `stage` (ZeRO paper, Table 1's rule).
MemoryBreakdown model_state_bytes(double parameters, const std::string& precision, const std::string& optimizer,
                                  int zero_stage, int dp);

/// UsageError naming the option when `layout` cannot run `run` on `cluster`
/// (sizes that do not divide, tp larger than a node, more GPUs than it has).
void check_plan_layout(const RunShape& run, const Cluster& cluster, const PlanLayout& layout);

/// The prediction, with the pipeline replayed through the simulator when
/// `simulate` (else its closed-form bubble: fast, for a search's first pass).
Prediction predict(const RunShape& run, const Cluster& cluster, const PlanLayout& layout, bool simulate = true);

}  // namespace paratorch::plan
