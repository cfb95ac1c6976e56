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
// Communication actions bracket the compute they feed: RecvActivation right
// before a forward that needs one, SendActivation right after it;
// RecvGrad / SendGrad likewise around a backward. Sends never block (the
// executor posts them non-blocking), so a list is deadlock-free exactly when
// its receives can all be matched in order — simulate() checks that.
#pragma once
#include <string>
#include <vector>

namespace paratorch::pipeline {

enum class ActionType { kForward, kBackward, kSendActivation, kRecvActivation, kSendGrad, kRecvGrad };

struct Action {
  ActionType type;
  int microbatch = 0;
  int chunk = 0;  // model chunk of this rank (0 unless interleaved)
  bool operator==(const Action& o) const {
    return type == o.type && microbatch == o.microbatch && chunk == o.chunk;
  }
};

/// "F3.1" (forward of micro-batch 3, chunk 1), "sendA3.1", ...
std::string to_string(const Action& action);
bool is_compute(ActionType type);

/// The shape every schedule is generated for.
struct PipelineShape {
  int stages = 1;          // pipeline ranks p
  int microbatches = 1;    // m
  int virtual_stages = 1;  // v: model chunks per rank
  int model_stages() const { return stages * virtual_stages; }
  /// Model stage of `chunk` on pipeline rank `rank`: chunk * p + rank.
  int model_stage(int rank, int chunk) const { return chunk * stages + rank; }
  int rank_of_stage(int model_stage) const { return model_stage % stages; }
  int chunk_of_stage(int model_stage) const { return model_stage / stages; }
};

/// The valid schedule names, for messages: gpipe, 1f1b, interleaved.
const std::vector<std::string>& schedule_names();

/// Checks `name` and the shape together; UsageError names the key to change
/// ([parallel] schedule, microbatches, virtual_stages). Both checks below.
void validate_schedule(const std::string& name, const PipelineShape& shape);
/// The schedule's own rules (known name, interleaved's micro-batch groups).
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

/// Theoretical bubble fraction with uniform stage costs: (p-1)/(m+p-1) for
/// gpipe and 1f1b, (p-1)/(v*m+p-1) for interleaved.
double theoretical_bubble(const std::string& name, const PipelineShape& shape);

/// Message tag of a transfer across the boundary after model stage
/// `from_stage` (activations) or before it (gradients), unique per step.
int transfer_tag(const PipelineShape& shape, int microbatch, int boundary, bool gradient);

}  // namespace paratorch::pipeline
