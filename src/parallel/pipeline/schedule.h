// src/parallel/pipeline/schedule.h — pipeline schedules as data: for every pipeline
// rank, the ordered list of actions it performs in one optimizer step.
//
// One executor (executor.h) runs any list; the simulator (simulator.h), the
// Gantt chart and the bubble measurement read the same lists. Schedules:
//   gpipe        all forwards, then all backwards in reverse micro-batch
//                order (Huang et al., 2019). In flight: m micro-batches.
//   1f1b         PipeDream-Flush (Narayanan et al., 2021): rank r runs
//                p-r-1 warm-up forwards, then one forward one backward,
//                then the cool-down backwards. In flight: <= p - r.
//   interleaved  Megatron-LM's interleaved 1F1B (Narayanan et al., SC'21):
//                v model chunks per rank; chunk c of rank r is model stage
//                c*p + r. Bubble (p-1)/(v*m+p-1) instead of (p-1)/(m+p-1).
//   zb-h1        Zero Bubble ZB-H1 (Qi et al., 2023): each backward is split
//                into I (the input's gradient, which the previous stage
//                waits for) and W (the weights' gradient, which nobody waits
//                for); rank r runs 1F1B with I and defers its W by r
//                micro-batches, so W fills the cool-down. At most p
//                micro-batches in flight per rank (1F1B's rank 0);
//                bubble (p-1)/(3m+p-1) when F = I = W.
//   zb-v         Zero Bubble ZB-V: two chunks per rank in a V (chunk 0 of
//                rank r is stage r, chunk 1 is stage 2p-1-r, so rank 0 holds
//                the first and the last stage); the order comes from a list
//                scheduler (zb_schedule.cpp) with F = I = W, at most 2p chunk
//                micro-batches (p stages' worth) in flight per rank. Its
//                only idle time is the start-up skew, (p-1)/2 forwards.
// Communication actions bracket the compute they feed: RecvActivation right
// before a forward that needs one, SendActivation right after it;
// RecvGrad / SendGrad likewise around a backward (or its I half; W sends
// nothing). Sends never block (the
// executor posts them non-blocking), so a list is deadlock-free exactly when
// its receives can all be matched in order — simulate() checks that.
#pragma once
#include <string>
#include <vector>

namespace paratorch::pipeline {

/// kBackward is a whole backward; kBackwardInput (I) and kBackwardWeight (W)
/// are its two halves in the zero-bubble schedules.
enum class ActionType {
  kForward,
  kBackward,
  kSendActivation,
  kRecvActivation,
  kSendGrad,
  kRecvGrad,
  kBackwardInput,
  kBackwardWeight,
};

struct Action {
  ActionType type;
  int microbatch = 0;
  int chunk = 0;  // model chunk of this rank (0 unless interleaved)
  bool operator==(const Action& o) const {
    return type == o.type && microbatch == o.microbatch && chunk == o.chunk;
  }
};

/// "F3.1" (forward of micro-batch 3, chunk 1), "I3.1", "W3.1", "sendA3.1", ...
std::string to_string(const Action& action);
bool is_compute(ActionType type);
/// kBackward or kBackwardWeight: the actions that accumulate parameter gradients.
bool makes_weight_grads(ActionType type);

/// The shape every schedule is generated for.
struct PipelineShape {
  int stages = 1;          // pipeline ranks p
  int microbatches = 1;    // m
  int virtual_stages = 1;  // v: model chunks per rank
  bool v_shape = false;    // zb-v's placement (v = 2): chunk 1 of rank r is stage 2p-1-r
  int model_stages() const { return stages * virtual_stages; }
  /// Model stage of `chunk` on pipeline rank `rank`: chunk * p + rank, or
  /// 2p-1-rank for chunk 1 in the V placement.
  int model_stage(int rank, int chunk) const {
    return v_shape && chunk == 1 ? 2 * stages - 1 - rank : chunk * stages + rank;
  }
  int rank_of_stage(int model_stage) const {
    return v_shape && model_stage >= stages ? 2 * stages - 1 - model_stage : model_stage % stages;
  }
  int chunk_of_stage(int model_stage) const { return model_stage / stages; }
};

/// What the rest of the code asks of a schedule: one row per schedule in
/// schedule.cpp's table (with its compute order), so adding a schedule is
/// adding a row, and no caller compares names.
struct ScheduleKind {
  std::string name;
  /// Backward split into I and W (zb-h1, zb-v): needs m >= p, and no
  /// activation checkpointing.
  bool splits_backward = false;
  /// Takes virtual_stages > 1 chunks per rank, chunk c of rank r being
  /// stage c*p + r (interleaved); m then runs in groups of p.
  bool interleaves_chunks = false;
  /// Two chunks per rank in a V (zb-v): virtual_stages is 2 whatever is set
  /// (1, "the schedule's own", or 2).
  bool v_shape = false;
  /// Every forward before any backward (gpipe): all m micro-batches in flight.
  bool all_forwards_first = false;
  /// Work per micro-batch and chunk, in forward times, against the (p-1)
  /// forwards of start-up: the theoretical bubble is
  /// (p-1) / (work·v·m + p-1) — 1 for gpipe, 1f1b and interleaved (v
  /// counted only there), 3 for zb-h1 (F, I and W fill all but the
  /// F+I-W skew), 6 for zb-v (its idle time is (p-1)/2 forwards).
  double bubble_work = 1;
  /// Chunks each rank holds: virtual_stages where the schedule interleaves, 2 in the V, else 1.
  int chunks_per_rank(int virtual_stages) const { return v_shape ? 2 : interleaves_chunks ? virtual_stages : 1; }
};

/// The row of schedule `name`; null when there is none.
const ScheduleKind* find_schedule_kind(const std::string& name);
/// The row of schedule `name`; UsageError listing the valid names when there is none.
const ScheduleKind& schedule_kind(const std::string& name);

/// The shape schedule `name` runs on: zb-v always has 2 chunks per rank in
/// the V placement (`virtual_stages` may be 1, meaning "the schedule's own",
/// or 2); the others take `virtual_stages` as given.
PipelineShape shape_for(const std::string& name, int stages, int microbatches, int virtual_stages);
/// True for the schedules that split backward into I and W (zb-h1, zb-v);
/// false for a name that is no schedule.
bool splits_backward(const std::string& name);

/// The valid schedule names, in the table's order, for messages: gpipe,
/// 1f1b, interleaved, zb-h1, zb-v.
const std::vector<std::string>& schedule_names();

/// Checks `name` and the shape together; UsageError names the key to change
/// ([parallel] schedule, microbatches, virtual_stages). Both checks below.
void validate_schedule(const std::string& name, const PipelineShape& shape);
/// The schedule's own rules (known name, interleaved's micro-batch groups,
/// the zero-bubble schedules' m >= p and zb-v's two chunks).
void validate_schedule_shape(const std::string& name, const PipelineShape& shape);
/// What running it over MPI adds: every transfer's tag below MPI's
/// guaranteed MPI_TAG_UB (32767), so micro-batches x model stages x 2 must
/// fit. The executor checks it; a simulation (the planner's) needs not.
void validate_transfer_tags(const PipelineShape& shape);

/// Every pipeline rank's action list (index = pipeline rank).
struct Schedule {
  std::string name;
  PipelineShape shape;
  std::vector<std::vector<Action>> ranks;
};

/// Builds the schedule `name` for `shape` (validate_schedule_shape first).
Schedule make_schedule(const std::string& name, const PipelineShape& shape);

/// Theoretical bubble fraction with uniform stage costs and a backward of
/// twice the forward (I = W = F when split): (p-1)/(m+p-1) for gpipe and
/// 1f1b, (p-1)/(v*m+p-1) for interleaved, (p-1)/(3m+p-1) for zb-h1 and
/// (p-1)/(6m+p-1) for zb-v (its start-up skew of (p-1)/2 forwards).
double theoretical_bubble(const std::string& name, const PipelineShape& shape);

/// Message tag of a transfer across the boundary after model stage
/// `from_stage` (activations) or before it (gradients), unique per step.
int transfer_tag(const PipelineShape& shape, int microbatch, int boundary, bool gradient);

}  // namespace paratorch::pipeline
