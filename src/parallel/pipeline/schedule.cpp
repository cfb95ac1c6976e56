// src/parallel/pipeline/schedule.cpp — see schedule.h. Each schedule is first an order
// of compute steps (forward/backward, micro-batch, chunk) per rank; the
// communication actions are then placed around them by one rule.
#include "parallel/pipeline/schedule.h"

#include "parallel/pipeline/compute_order.h"
#include <paratorch/errors.h>

#include <algorithm>

namespace paratorch::pipeline {
namespace {

constexpr ActionType kF = ActionType::kForward, kB = ActionType::kBackward;

// GPipe: F0..F(m-1), then B(m-1)..B0 (the last forward's backward first:
// its activations are the freshest, and the last stage can start at once).
ComputeOrder gpipe_order(const PipelineShape& s) {
  ComputeOrder out;
  for (int i = 0; i < s.microbatches; ++i) out.push_back({kF, i, 0});
  for (int i = s.microbatches - 1; i >= 0; --i) out.push_back({kB, i, 0});
  return out;
}

// PipeDream-Flush: p-r-1 warm-up forwards, then alternate F/B, then drain.
ComputeOrder one_f_one_b_order(const PipelineShape& s, int rank) {
  const int m = s.microbatches;
  const int warmup = std::min(s.stages - rank - 1, m);
  ComputeOrder out;
  for (int i = 0; i < warmup; ++i) out.push_back({kF, i, 0});
  for (int i = 0; i < m - warmup; ++i) {
    out.push_back({kF, warmup + i, 0});
    out.push_back({kB, i, 0});
  }
  for (int i = m - warmup; i < m; ++i) out.push_back({kB, i, 0});
  return out;
}

// Megatron-LM's interleaved schedule (schedules.py,
// forward_backward_pipelining_with_interleaving): virtual micro-batch k runs
// micro-batches in groups of p, chunk by chunk; backward visits the chunks
// in reverse. Warm-up: 2(p-r-1) + (v-1)p virtual micro-batches.
ComputeOrder interleaved_order(const PipelineShape& s, int rank) {
  const int p = s.stages, v = s.virtual_stages, total = s.microbatches * v;
  auto step = [&](int k, bool forward) {
    const int in_group = k % (p * v);
    int chunk = in_group / p;
    if (!forward) chunk = v - 1 - chunk;
    return ComputeStep{forward ? kF : kB, (k / (p * v)) * p + in_group % p, chunk};
  };
  const int warmup = std::min(2 * (p - rank - 1) + (v - 1) * p, total);
  ComputeOrder out;
  for (int k = 0; k < warmup; ++k) out.push_back(step(k, true));
  for (int k = 0; k < total - warmup; ++k) {
    out.push_back(step(warmup + k, true));
    out.push_back(step(k, false));
  }
  for (int k = total - warmup; k < total; ++k) out.push_back(step(k, false));
  return out;
}

// The one placement rule for communication (see schedule.h).
std::vector<Action> with_transfers(const ComputeOrder& order, const PipelineShape& s, int rank) {
  const int last = s.model_stages() - 1;
  std::vector<Action> out;
  for (const auto& c : order) {
    const int stage = s.model_stage(rank, c.chunk);
    if (c.type == kF) {
      if (stage > 0) out.push_back({ActionType::kRecvActivation, c.microbatch, c.chunk});
      out.push_back({kF, c.microbatch, c.chunk});
      if (stage < last) out.push_back({ActionType::kSendActivation, c.microbatch, c.chunk});
    } else if (c.type == ActionType::kBackwardWeight) {
      out.push_back({c.type, c.microbatch, c.chunk});  // W: nobody waits for it, it sends nothing
    } else {  // a whole backward or its I half
      if (stage < last) out.push_back({ActionType::kRecvGrad, c.microbatch, c.chunk});
      out.push_back({c.type, c.microbatch, c.chunk});
      if (stage > 0) out.push_back({ActionType::kSendGrad, c.microbatch, c.chunk});
    }
  }
  return out;
}

}  // namespace

std::string to_string(const Action& a) {
  static const char* names[] = {"F", "B", "sendA", "recvA", "sendG", "recvG", "I", "W"};
  return names[static_cast<int>(a.type)] + std::to_string(a.microbatch) + "." + std::to_string(a.chunk);
}

bool is_compute(ActionType type) {
  return type == ActionType::kForward || type == ActionType::kBackward || type == ActionType::kBackwardInput ||
         type == ActionType::kBackwardWeight;
}

bool makes_weight_grads(ActionType type) {
  return type == ActionType::kBackward || type == ActionType::kBackwardWeight;
}

const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names = {"gpipe", "1f1b", "interleaved", "zb-h1", "zb-v"};
  return names;
}

bool splits_backward(const std::string& name) { return name == "zb-h1" || name == "zb-v"; }

PipelineShape shape_for(const std::string& name, int stages, int microbatches, int virtual_stages) {
  PipelineShape s{stages, microbatches, virtual_stages};
  if (name == "zb-v" && virtual_stages <= 2) s.virtual_stages = 2, s.v_shape = true;
  return s;
}

void validate_schedule_shape(const std::string& name, const PipelineShape& s) {
  const auto& names = schedule_names();
  if (std::find(names.begin(), names.end(), name) == names.end())
    throw UsageError("paratorch: schedule \"" + name +
                     "\" is unknown; valid schedules: gpipe, 1f1b, interleaved, zb-h1, zb-v");
  if (s.stages < 1) throw UsageError("paratorch: PipelineShape::stages must be >= 1, got " + std::to_string(s.stages));
  if (s.microbatches < 1)
    throw UsageError("paratorch: PipelineShape::microbatches must be >= 1, got " + std::to_string(s.microbatches));
  if (s.virtual_stages < 1)
    throw UsageError("paratorch: PipelineShape::virtual_stages must be >= 1, got " + std::to_string(s.virtual_stages));
  if (name == "zb-v" && (s.virtual_stages != 2 || !s.v_shape))
    throw UsageError("paratorch: schedule \"zb-v\" places exactly 2 chunks per rank in a V; got virtual_stages = " +
                     std::to_string(s.virtual_stages) + " (leave virtual_stages at 1 or set 2)");
  if (s.v_shape && name != "zb-v")
    throw UsageError("paratorch: the V placement belongs to schedule \"zb-v\", not \"" + name + "\"");
  if (s.virtual_stages > 1 && name != "interleaved" && name != "zb-v")
    throw UsageError("paratorch: PipelineShape::virtual_stages = " + std::to_string(s.virtual_stages) +
                     " needs schedule \"interleaved\" (or 2 for \"zb-v\"), got \"" + name + "\"");
  if (splits_backward(name) && s.microbatches < s.stages)
    throw UsageError("paratorch: schedule \"" + name + "\" needs at least as many micro-batches as pipeline ranks (" +
                     std::to_string(s.stages) +
                     "), got PipelineShape::microbatches = " + std::to_string(s.microbatches) +
                     ": its weight passes fill the bubble only once every rank has work in flight; "
                     "raise PipelineShape::microbatches or use 1f1b");
  if (name == "interleaved" && s.microbatches % s.stages != 0)
    throw UsageError("paratorch: PipelineShape::microbatches = " + std::to_string(s.microbatches) +
                     " must be a multiple of PipelineShape::stages = " + std::to_string(s.stages) +
                     " for schedule \"interleaved\" (micro-batches run in groups of one per stage)");
}

void validate_transfer_tags(const PipelineShape& s) {
  // Tags must stay below MPI's guaranteed MPI_TAG_UB (32767).
  if (static_cast<long long>(s.microbatches) * s.model_stages() * 2 > 32767)
    throw UsageError("paratorch: PipelineShape::microbatches = " + std::to_string(s.microbatches) +
                     " is too many for " + std::to_string(s.model_stages()) + " model stages (at most " +
                     std::to_string(32767 / (2 * s.model_stages())) + ")");
}

void validate_schedule(const std::string& name, const PipelineShape& s) {
  validate_schedule_shape(name, s);
  validate_transfer_tags(s);
}

Schedule make_schedule(const std::string& name, const PipelineShape& shape) {
  validate_schedule_shape(name, shape);
  Schedule out{name, shape, {}};
  const std::vector<ComputeOrder> zbv = name == "zb-v" ? zb_v_orders(shape) : std::vector<ComputeOrder>{};
  for (int r = 0; r < shape.stages; ++r) {
    ComputeOrder order = name == "gpipe"         ? gpipe_order(shape)
                         : name == "1f1b"        ? one_f_one_b_order(shape, r)
                         : name == "interleaved" ? interleaved_order(shape, r)
                         : name == "zb-h1"       ? zb_h1_order(shape, r)
                                                 : zbv[static_cast<size_t>(r)];
    out.ranks.push_back(with_transfers(order, shape, r));
  }
  return out;
}

double theoretical_bubble(const std::string& name, const PipelineShape& s) {
  const double p = s.stages, m = s.microbatches, v = name == "interleaved" ? s.virtual_stages : 1;
  if (name == "zb-h1") return (p - 1) / (3 * m + p - 1);  // idle (p-1)(F+I-W) against 3m of work
  if (name == "zb-v") return (p - 1) / (6 * m + p - 1);   // only the start-up skew, (p-1)/2 forwards
  return (p - 1) / (v * m + p - 1);
}

int transfer_tag(const PipelineShape& s, int microbatch, int boundary, bool gradient) {
  return (microbatch * s.model_stages() + boundary) * 2 + (gradient ? 1 : 0);
}

}  // namespace paratorch::pipeline
