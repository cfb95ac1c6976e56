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

namespace {

// One row per schedule: its traits and every rank's compute order.
struct ScheduleRow {
  ScheduleKind kind;
  std::vector<ComputeOrder> (*orders)(const PipelineShape& shape);
};

// A per-rank order function as an every-rank one.
template <ComputeOrder (*Order)(const PipelineShape&, int)>
std::vector<ComputeOrder> each_rank(const PipelineShape& s) {
  std::vector<ComputeOrder> out;
  for (int r = 0; r < s.stages; ++r) out.push_back(Order(s, r));
  return out;
}

ComputeOrder gpipe_on(const PipelineShape& s, int /*rank*/) { return gpipe_order(s); }

const std::vector<ScheduleRow>& table() {
  // name, splits_backward, interleaves_chunks, v_shape, all_forwards_first, bubble_work
  static const std::vector<ScheduleRow> rows = {
      {{"gpipe", false, false, false, true, 1}, each_rank<gpipe_on>},
      {{"1f1b", false, false, false, false, 1}, each_rank<one_f_one_b_order>},
      {{"interleaved", false, true, false, false, 1}, each_rank<interleaved_order>},
      {{"zb-h1", true, false, false, false, 3}, each_rank<zb_h1_order>},
      {{"zb-v", true, false, true, false, 6}, zb_v_orders},
  };
  return rows;
}

const ScheduleRow* find_row(const std::string& name) {
  for (const auto& row : table())
    if (row.kind.name == name) return &row;
  return nullptr;
}

const ScheduleRow& row_of(const std::string& name) {
  if (const ScheduleRow* row = find_row(name)) return *row;
  std::string valid;
  for (const auto& n : schedule_names()) valid += (valid.empty() ? "" : ", ") + n;
  throw UsageError("paratorch: schedule \"" + name + "\" is unknown; valid schedules: " + valid);
}

}  // namespace

const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& row : table()) out.push_back(row.kind.name);
    return out;
  }();
  return names;
}

const ScheduleKind* find_schedule_kind(const std::string& name) {
  const ScheduleRow* row = find_row(name);
  return row ? &row->kind : nullptr;
}

const ScheduleKind& schedule_kind(const std::string& name) { return row_of(name).kind; }

bool splits_backward(const std::string& name) {
  const ScheduleKind* kind = find_schedule_kind(name);
  return kind && kind->splits_backward;
}

PipelineShape shape_for(const std::string& name, int stages, int microbatches, int virtual_stages) {
  PipelineShape s{stages, microbatches, virtual_stages};
  const ScheduleKind* kind = find_schedule_kind(name);
  if (kind && kind->v_shape && virtual_stages <= 2) s.virtual_stages = 2, s.v_shape = true;
  return s;
}

void validate_schedule_shape(const std::string& name, const PipelineShape& s) {
  const ScheduleKind& kind = schedule_kind(name);
  if (s.stages < 1) throw UsageError("paratorch: PipelineShape::stages must be >= 1, got " + std::to_string(s.stages));
  if (s.microbatches < 1)
    throw UsageError("paratorch: PipelineShape::microbatches must be >= 1, got " + std::to_string(s.microbatches));
  if (s.virtual_stages < 1)
    throw UsageError("paratorch: PipelineShape::virtual_stages must be >= 1, got " + std::to_string(s.virtual_stages));
  if (kind.v_shape && (s.virtual_stages != 2 || !s.v_shape))
    throw UsageError("paratorch: schedule \"" + name +
                     "\" places exactly 2 chunks per rank in a V; got virtual_stages = " +
                     std::to_string(s.virtual_stages) + " (leave virtual_stages at 1 or set 2)");
  if (s.v_shape && !kind.v_shape)
    throw UsageError("paratorch: the V placement belongs to schedule \"zb-v\", not \"" + name + "\"");
  if (s.virtual_stages > 1 && !kind.interleaves_chunks && !kind.v_shape)
    throw UsageError("paratorch: PipelineShape::virtual_stages = " + std::to_string(s.virtual_stages) +
                     " needs schedule \"interleaved\" (or 2 for \"zb-v\"), got \"" + name + "\"");
  if (kind.splits_backward && s.microbatches < s.stages)
    throw UsageError("paratorch: schedule \"" + name + "\" needs at least as many micro-batches as pipeline ranks (" +
                     std::to_string(s.stages) +
                     "), got PipelineShape::microbatches = " + std::to_string(s.microbatches) +
                     ": its weight passes fill the bubble only once every rank has work in flight; "
                     "raise PipelineShape::microbatches or use 1f1b");
  if (kind.interleaves_chunks && s.microbatches % s.stages != 0)
    throw UsageError("paratorch: PipelineShape::microbatches = " + std::to_string(s.microbatches) +
                     " must be a multiple of PipelineShape::stages = " + std::to_string(s.stages) + " for schedule \"" +
                     name + "\" (micro-batches run in groups of one per stage)");
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
  const std::vector<ComputeOrder> orders = row_of(name).orders(shape);
  for (int r = 0; r < shape.stages; ++r) out.ranks.push_back(with_transfers(orders[static_cast<size_t>(r)], shape, r));
  return out;
}

double theoretical_bubble(const std::string& name, const PipelineShape& s) {
  const ScheduleKind& kind = schedule_kind(name);
  const double p = s.stages, m = s.microbatches, v = kind.interleaves_chunks ? s.virtual_stages : 1;
  return (p - 1) / (kind.bubble_work * v * m + p - 1);
}

int transfer_tag(const PipelineShape& s, int microbatch, int boundary, bool gradient) {
  return (microbatch * s.model_stages() + boundary) * 2 + (gradient ? 1 : 0);
}

}  // namespace paratorch::pipeline
