// src/plan/predict.cpp — see predict.h.
#include "plan/predict.h"

#include "parallel/pipeline/schedule.h"
#include "plan/comm_cost.h"
#include <paratorch/errors.h>

#include <algorithm>

namespace paratorch::plan {
namespace {

constexpr double kBucketBytes = 25.0 * 1024 * 1024;  // DDPOptions::bucket_mb's default

double dtype_bytes(const std::string& precision) { return precision == "fp32" ? 4 : 2; }

bool v_shaped(const PlanLayout& L) {
  const pipeline::ScheduleKind* kind = pipeline::find_schedule_kind(L.schedule);
  return kind && kind->v_shape;
}

// Micro-batches (times chunks) rank 0 keeps in flight, when not simulated.
int closed_form_in_flight(const PlanLayout& L, int64_t m) {
  if (L.pp == 1) return 1;
  const pipeline::ScheduleKind& kind = pipeline::schedule_kind(L.schedule);
  if (kind.all_forwards_first) return static_cast<int>(m);
  if (kind.interleaves_chunks)
    return static_cast<int>(std::min<int64_t>(m * L.virtual_stages, (L.virtual_stages + 1) * L.pp));
  if (kind.v_shape) return static_cast<int>(std::min<int64_t>(2 * m, 2 * L.pp));  // half-stage chunks
  return static_cast<int>(std::min<int64_t>(m, L.pp));
}

// A schedule's shape error in the planner's terms: its micro-batches are
// [data] global_batch / (dp x micro-batch size), not an option of their own.
std::string in_plan_words(std::string message) {
  const std::string prefix = "paratorch: ";
  if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
  const std::pair<std::string, std::string> words[] = {
      {"PipelineShape::microbatches", "micro-batches ([data] global_batch / (dp x micro-batch size))"},
      {"PipelineShape::stages", "pp"},
      {"PipelineShape::virtual_stages", "virtual stages"}};
  for (const auto& [from, to] : words)
    for (size_t at = message.find(from); at != std::string::npos; at = message.find(from, at + to.size()))
      message.replace(at, from.size(), to);
  return message;
}

}  // namespace

double optimizer_bytes_per_parameter(const std::string& precision, const std::string& optimizer) {
  const double state = optimizer == "sgd" ? 8 : 16;  // read + write of momentum (and variance)
  const double master = precision == "fp32" ? 8 : 8 + dtype_bytes(precision);
  // + the fp32 gradient read by the update, and by the gradient norm, and
  // written by zeroing it for the next step
  return state + master + 3 * 4;
}

std::string PlanLayout::layout_text() const {
  return "dp=" + std::to_string(dp) + ",pp=" + std::to_string(pp) + ",tp=" + std::to_string(tp);
}

int PlanLayout::chunks_per_rank() const {
  const pipeline::ScheduleKind* kind = pipeline::find_schedule_kind(schedule);
  return pp > 1 && kind ? kind->chunks_per_rank(virtual_stages) : virtual_stages;
}

std::string PlanLayout::schedule_text() const {
  if (pp == 1) return "none";
  const pipeline::ScheduleKind* kind = pipeline::find_schedule_kind(schedule);
  return kind && kind->interleaves_chunks ? schedule + "-v" + std::to_string(virtual_stages) : schedule;
}

MemoryBreakdown model_state_bytes(double parameters, const std::string& precision, const std::string& optimizer,
                                  int zero_stage, int dp) {
  const bool mixed = precision != "fp32";
  const double p = dtype_bytes(precision), g = p;
  // Optimizer state: Adam's two moments (SGD: momentum), plus the fp32
  // master copy in mixed precision (the ZeRO paper's K = 12 for Adam).
  const double o = (optimizer == "sgd" ? 4 : 8) + (mixed ? 4 : 0);
  MemoryBreakdown m;
  m.parameters = parameters * p / (zero_stage >= 3 ? dp : 1);
  m.gradients = parameters * g / (zero_stage >= 2 ? dp : 1);
  m.optimizer = parameters * o / (zero_stage >= 1 ? dp : 1);
  return m;
}

void check_plan_layout(const RunShape& run, const Cluster& cluster, const PlanLayout& L) {
  auto fail = [](const std::string& what) { throw UsageError("paratorch: plan: " + what); };
  const ModelShape& g = run.model;
  if (L.dp < 1 || L.pp < 1 || L.tp < 1) fail("dp, pp and tp must be >= 1 (" + L.layout_text() + ")");
  if (static_cast<int64_t>(L.dp) * L.pp * L.tp > cluster.gpus())
    fail("layout " + L.layout_text() + " needs " + std::to_string(static_cast<int64_t>(L.dp) * L.pp * L.tp) +
         " accelerators; the cluster has " + std::to_string(cluster.gpus()) + " ([cluster] nodes x gpus_per_node)");
  if (L.tp > cluster.gpus_per_node)
    fail("tp = " + std::to_string(L.tp) + " is larger than a node (gpus_per_node = " +
         std::to_string(cluster.gpus_per_node) + "); tensor parallelism stays inside a node: lower tp");
  if (g.family == ModelShape::Family::kMlp && L.tp > 1)
    fail("tp = " + std::to_string(L.tp) + ": the mlp has no tensor-parallel layers; use tp = 1");
  if (g.heads % L.tp != 0 || g.vocab % L.tp != 0)
    fail("tp = " + std::to_string(L.tp) + " must divide [model] n_heads = " + std::to_string(g.heads) +
         " and vocab_size = " + std::to_string(g.vocab));
  // paratorch's pipelines cut the embedding (or input projection) and the
  // head as blocks of their own, so each of pp x v chunks needs one of
  // n_layers + 2 blocks.
  if (g.layers + 2 < static_cast<int64_t>(L.pp) * L.chunks_per_rank())
    fail("pp x chunks per rank = " + std::to_string(L.pp * L.chunks_per_rank()) +
         (v_shaped(L) ? " (" + L.schedule + " keeps two per rank)" : "") + " is more than the model's blocks, " +
         "[model] n_layers + 2 = " + std::to_string(g.layers + 2) + ": every chunk needs a block");
  if (L.microbatch_size < 1 || run.global_batch % (L.dp * L.microbatch_size) != 0)
    fail("dp x micro-batch size = " + std::to_string(L.dp * L.microbatch_size) +
         " must divide [data] global_batch = " + std::to_string(run.global_batch));
  if (L.zero < 0 || L.zero > 3) fail("zero = " + std::to_string(L.zero) + " must be 0..3");
  if (L.zero > 1 && L.pp > 1)
    fail("zero = " + std::to_string(L.zero) + " with pp > 1: paratorch's pipelines shard optimizer state (zero 1) only");
  if (L.pp > 1 && L.recompute && pipeline::splits_backward(L.schedule))
    fail("schedule " + L.schedule + " with recompute: the zero-bubble schedules do not combine with activation "
         "checkpointing yet; use recompute 0 or schedule 1f1b");
  if (L.pp > 1) {
    try {
      pipeline::validate_schedule_shape(
          L.schedule, pipeline::shape_for(L.schedule, L.pp, static_cast<int>(L.microbatches(run.global_batch)),
                                          L.virtual_stages));
    } catch (const UsageError& e) {
      fail(in_plan_words(e.what()));
    }
  }
}

Prediction predict(const RunShape& run, const Cluster& cluster, const PlanLayout& layout, bool simulate) {
  check_plan_layout(run, cluster, layout);
  PlanLayout L = layout;
  if (L.zero == 3) L.recompute = true;  // paratorch's stage 3 keeps block inputs and recomputes in backward
  const ModelShape& g = run.model;
  const CommCost comm{cluster};
  const int64_t b = L.microbatch_size, m = L.microbatches(run.global_batch);
  const int gpus = L.dp * L.pp * L.tp;
  // Ranks that outnumber a CPU node's cores share them (Cluster::compute_share):
  // a step takes at least the node's compute over its cores.
  const double oversubscribed = 1 / cluster.compute_share(std::min(gpus, cluster.gpus_per_node));
  const double peak = cluster.peak_flops(run.precision);
  const double memory_rate = cluster.memory_gbps * 1e9;
  const double value_bytes = dtype_bytes(run.precision);
  auto rate = [&](double n) { return peak * gemm_efficiency(n, cluster.gemm_efficiency, cluster.gemm_half_dim); };
  // Each product at the efficiency of its narrowest dimension: the sharded
  // hidden size (the head size for attention), or the micro-batch's rows.
  const double rows = static_cast<double>(b * g.seq);
  const double dense_rate = rate(std::min(static_cast<double>(g.hidden) / L.tp, rows));
  const double attention_rate =
      rate(std::min(static_cast<double>(g.hidden) / static_cast<double>(g.heads), static_cast<double>(g.seq)));
  const double act_bytes = static_cast<double>(b * g.seq * g.hidden) * dtype_bytes(run.precision);
  const GroupSpan tp_group{L.tp, 1}, dp_group{L.dp, L.tp};

  // One micro-batch through one stage, every stage costed as the busiest: its
  // layers plus the logits (the last stage) or the mlp's input projection
  // (the first), both at pp = 1.
  // An uneven split costs its busiest stage (and chunk): the ceiling.
  const int v = L.pp > 1 ? pipeline::shape_for(L.schedule, L.pp, 1, L.virtual_stages).virtual_stages : 1;  // zb-v: 2
  const int64_t chunk_layers = (g.layers + L.pp * v - 1) / (L.pp * v);
  const int64_t layers = chunk_layers * v;
  // Arithmetic at the GEMMs' efficiency, plus the memory-bound element-wise
  // work (LayerNorm, softmax, GELU, dropout, residuals), which moves about
  // the bytes the layer keeps for backward once per pass.
  const double elementwise = g.layer_activation_bytes(b, L.tp, false, value_bytes) / cluster.elementwise_bytes_per_s();
  const double attention = g.attention_forward_flops(b, L.tp);
  const double layer_f =
      (g.layer_forward_flops(b, L.tp) - attention) / dense_rate + attention / attention_rate + elementwise;
  const double tp_ar = comm.all_reduce_s(act_bytes, tp_group);
  const double logits_f = g.logits_forward_flops(b, L.tp) / dense_rate;
  const double input_f = g.input_forward_flops(b) / rate(std::min(static_cast<double>(g.hidden), rows));
  // Forward + backward of the ends: the logits 1 + 2 passes, the input projection 1 + 1.
  const double ends = L.pp == 1 ? 3 * logits_f + 2 * input_f : std::max(3 * logits_f, 2 * input_f);
  double stage_f = static_cast<double>(layers) * (layer_f + 2 * tp_ar) + ends / 3;
  double stage_b = static_cast<double>(layers) * (2 * layer_f + 2 * tp_ar) + 2 * ends / 3;
  if (L.recompute) stage_b += static_cast<double>(layers) * (layer_f + 2 * tp_ar);
  const double params_here = g.parameters() / (L.tp * L.pp);
  if (L.zero == 3) {  // parameters gathered for each forward and backward, gradients reduce-scattered
    const double gather = comm.all_gather_s(params_here * dtype_bytes(run.precision), dp_group);
    const double scatter = comm.reduce_scatter_s(params_here * dtype_bytes(run.reduce_precision), dp_group);
    stage_f = std::max(stage_f, gather);
    stage_b = std::max(stage_b, gather + scatter);
  }
  const double transfer = comm.p2p_s(act_bytes / L.tp, L.tp * L.dp);

  Prediction p;
  p.layout = L;
  double makespan = 0, busy = 0;
  int in_flight = closed_form_in_flight(L, m);
  if (L.pp == 1) {
    makespan = busy = static_cast<double>(m) * (stage_f + stage_b);
  } else if (simulate) {
    const auto schedule =
        pipeline::make_schedule(L.schedule, pipeline::shape_for(L.schedule, L.pp, static_cast<int>(m), L.virtual_stages));
    p.pipeline = pipeline::simulate(schedule, {stage_f, stage_b, transfer});
    makespan = p.pipeline.makespan;
    busy = *std::max_element(p.pipeline.busy.begin(), p.pipeline.busy.end());
    in_flight = p.pipeline.peak_in_flight.empty() ? 1 : p.pipeline.peak_in_flight[0];
  } else {
    busy = static_cast<double>(m) * (stage_f + stage_b);
    // Idle per rank: (p-1)(F+B)/v; the zero-bubble schedules fill it with
    // weight passes (B = I + W, I = W): of the 3(p-1)F it would be, the
    // share 1/bubble_work stays, (p-1)F for zb-h1 and (p-1)F/2 for zb-v.
    const pipeline::ScheduleKind& kind = pipeline::schedule_kind(L.schedule);
    const double idle = kind.splits_backward ? 3 * (L.pp - 1.0) * stage_f / kind.bubble_work
                                             : (L.pp - 1.0) / L.virtual_stages * (stage_f + stage_b);
    makespan = busy + idle + 2 * (L.pp - 1) * transfer;
  }
  if (oversubscribed > 1) {  // the ranks' mean compute (the model's work over pp), times how many share a core
    const double layer_passes = 3 * layer_f + 4 * tp_ar + (L.recompute ? layer_f + 2 * tp_ar : 0);
    const double mean_stage = (static_cast<double>(g.layers) * layer_passes + 3 * logits_f + 2 * input_f) / L.pp;
    busy *= oversubscribed;
    makespan = std::max(makespan, static_cast<double>(m) * mean_stage * oversubscribed);
  }
  const double tp_total = static_cast<double>(m) * static_cast<double>(layers) * (L.recompute ? 6 : 4) * tp_ar;
  p.time.tp_comm = tp_total;
  p.time.compute = busy - tp_total;
  p.time.p2p = L.pp > 1 ? 2 * (L.pp - 1) * transfer : 0;
  p.time.bubble = std::max(0.0, makespan - busy - p.time.p2p);

  // The dp reduction overlaps the rank's last backward (its last chunk's).
  const double grads = params_here * dtype_bytes(run.reduce_precision);
  const double window = stage_b / L.chunks_per_rank();
  const double last_bucket = std::min(1.0, kBucketBytes / std::max(grads, 1.0));
  auto exposed = [&](double t) { return std::max(t - window, t * last_bucket); };
  if (L.zero == 0) p.time.dp_exposed = exposed(comm.all_reduce_s(grads, dp_group));
  else if (L.zero < 3)
    p.time.dp_exposed = exposed(comm.reduce_scatter_s(grads, dp_group)) +
                        comm.all_gather_s(params_here * dtype_bytes(run.precision), dp_group);
  const double updated = params_here / (L.zero >= 1 ? L.dp : 1);
  p.time.optimizer = updated * optimizer_bytes_per_parameter(run.precision, run.optimizer) / memory_rate * oversubscribed;

  p.step_s = makespan + p.time.dp_exposed + p.time.optimizer;
  p.tokens_per_s = static_cast<double>(run.global_batch * g.seq) / p.step_s;
  p.tflops_per_gpu = g.step_flops(run.global_batch, L.recompute) / (p.step_s * gpus) / 1e12;
  p.mfu = g.model_flops(run.global_batch) / (p.step_s * gpus * cluster.peak_flops(run.precision));

  p.memory = model_state_bytes(params_here, run.precision, run.optimizer, L.zero, L.dp);
  const double per_chunk =
      static_cast<double>(chunk_layers) * g.layer_activation_bytes(b, L.tp, L.recompute, value_bytes);
  const double working = L.recompute ? g.layer_activation_bytes(b, L.tp, false, value_bytes) : 0;  // being recomputed
  const double logits = 2.0 * static_cast<double>(b * g.seq) * static_cast<double>(g.vocab) / L.tp * 4;
  p.memory.activations = in_flight * per_chunk + working + logits;
  const double capacity = cluster.memory_gb * 1e9;
  p.fits = p.memory.total() <= capacity;
  p.memory_over_gb = std::max(0.0, (p.memory.total() - capacity) / 1e9);
  return p;
}

}  // namespace paratorch::plan
