// src/parallel/pipeline/options.cpp — PipelineOptions and
// DevicePlacementOptions validation; see options.h.
#include "parallel/pipeline/options.h"

#include <paratorch/errors.h>

namespace paratorch {

void PipelineOptions::validate() const {
  if (microbatches < 1)
    throw UsageError("paratorch: PipelineOptions::microbatches must be >= 1, got " + std::to_string(microbatches));
  if (virtual_stages < 1)
    throw UsageError("paratorch: PipelineOptions::virtual_stages must be >= 1, got " + std::to_string(virtual_stages));
  if (schedule == PipelineSchedule::kZeroBubbleV && virtual_stages > 2)
    throw UsageError("paratorch: PipelineOptions::schedule = PipelineSchedule::kZeroBubbleV places exactly 2 chunks "
                     "per rank; got PipelineOptions::virtual_stages = " + std::to_string(virtual_stages) +
                     " (leave it at 1 or set 2)");
  if (virtual_stages > 1 && schedule != PipelineSchedule::kInterleaved && schedule != PipelineSchedule::kZeroBubbleV)
    throw UsageError("paratorch: PipelineOptions::virtual_stages = " + std::to_string(virtual_stages) +
                     " needs PipelineOptions::schedule = PipelineSchedule::kInterleaved, got " +
                     parallel::pipeline::schedule_field(schedule));
  if (activation_checkpointing && (schedule == PipelineSchedule::kZeroBubbleH1 || schedule == PipelineSchedule::kZeroBubbleV))
    throw UsageError("paratorch: PipelineOptions::activation_checkpointing does not combine with " +
                     parallel::pipeline::schedule_field(schedule) + " yet; turn it off or use PipelineSchedule::kOneFOneB");
  if (partition == PartitionBy::kSplitPoints && split_points.empty())
    throw UsageError("paratorch: PipelineOptions::partition = PartitionBy::kSplitPoints needs "
                     "PipelineOptions::split_points (the first block of stages 1, 2, ...)");
  if (partition != PartitionBy::kSplitPoints && !split_points.empty())
    throw UsageError("paratorch: PipelineOptions::split_points is set but PipelineOptions::partition is not "
                     "PartitionBy::kSplitPoints; set both or neither");
  for (const auto& group : tied)
    if (group.size() < 2)
      throw UsageError("paratorch: PipelineOptions::tied groups must name at least 2 parameters, got " +
                       std::to_string(group.size()));
}

void DevicePlacementOptions::validate() const {
  if (partition == PartitionBy::kTime)
    throw UsageError("paratorch: DevicePlacementOptions::partition = PartitionBy::kTime is not available in one "
                     "process; use PartitionBy::kParameters or PartitionBy::kSplitPoints");
  if ((partition == PartitionBy::kSplitPoints) == split_points.empty())
    throw UsageError("paratorch: DevicePlacementOptions::split_points must be given exactly when "
                     "DevicePlacementOptions::partition = PartitionBy::kSplitPoints");
}

}  // namespace paratorch

namespace paratorch::parallel::pipeline {

std::string schedule_name(PipelineSchedule schedule) {
  switch (schedule) {
    case PipelineSchedule::kGPipe: return "gpipe";
    case PipelineSchedule::kOneFOneB: return "1f1b";
    case PipelineSchedule::kInterleaved: return "interleaved";
    case PipelineSchedule::kZeroBubbleH1: return "zb-h1";
    case PipelineSchedule::kZeroBubbleV: return "zb-v";
  }
  return "1f1b";
}

PipelineSchedule schedule_from_name(const std::string& name) {
  for (auto s : {PipelineSchedule::kGPipe, PipelineSchedule::kOneFOneB, PipelineSchedule::kInterleaved,
                 PipelineSchedule::kZeroBubbleH1, PipelineSchedule::kZeroBubbleV})
    if (schedule_name(s) == name) return s;
  throw UsageError("paratorch: schedule \"" + name +
                   "\" is unknown; valid schedules: gpipe, 1f1b, interleaved, zb-h1, zb-v");
}

std::string schedule_field(PipelineSchedule schedule) {
  switch (schedule) {
    case PipelineSchedule::kGPipe: return "PipelineSchedule::kGPipe";
    case PipelineSchedule::kOneFOneB: return "PipelineSchedule::kOneFOneB";
    case PipelineSchedule::kInterleaved: return "PipelineSchedule::kInterleaved";
    case PipelineSchedule::kZeroBubbleH1: return "PipelineSchedule::kZeroBubbleH1";
    case PipelineSchedule::kZeroBubbleV: return "PipelineSchedule::kZeroBubbleV";
  }
  return "?";
}

::paratorch::pipeline::PipelineShape check_shape(const PipelineOptions& o, int pp_size, int n_blocks) {
  const auto shape = ::paratorch::pipeline::shape_for(schedule_name(o.schedule), pp_size, o.microbatches, o.virtual_stages);
  const int stages = shape.model_stages();
  const std::string group = "the pp group of " + std::to_string(pp_size) + " rank(s)" +
                            (shape.v_shape                ? std::string(" x 2 chunks per rank (the V of zb-v)")
                             : shape.virtual_stages > 1 ? " x PipelineOptions::virtual_stages = " +
                                                              std::to_string(shape.virtual_stages)
                                                        : std::string());
  if (n_blocks < stages)
    throw UsageError("paratorch: " + group + " needs at least " + std::to_string(stages) +
                     " blocks (one per stage) but the model has " + std::to_string(n_blocks) +
                     "; use a smaller pp group or split the model into more children");
  if (o.partition == PartitionBy::kSplitPoints && static_cast<int>(o.split_points.size()) != stages - 1)
    throw UsageError("paratorch: PipelineOptions::split_points names " + std::to_string(o.split_points.size()) +
                     " cut(s), but " + group + " has " + std::to_string(stages) + " stages; give " +
                     std::to_string(stages - 1) + " (the first block of stages 1.." + std::to_string(stages - 1) +
                     ") or a pp group of " + std::to_string(o.split_points.size() + 1) + " ranks");
  if (o.schedule == PipelineSchedule::kInterleaved && o.microbatches % pp_size != 0)
    throw UsageError("paratorch: PipelineOptions::microbatches = " + std::to_string(o.microbatches) +
                     " must be a multiple of the pp group's size " + std::to_string(pp_size) +
                     " for PipelineSchedule::kInterleaved (micro-batches run in groups of pp)");
  // Message tags must stay below MPI's guaranteed MPI_TAG_UB (schedule.h's transfer_tag).
  if (static_cast<long long>(o.microbatches) * stages * 2 > 32767)
    throw UsageError("paratorch: PipelineOptions::microbatches = " + std::to_string(o.microbatches) +
                     " is too many for " + std::to_string(stages) + " stages (at most " +
                     std::to_string(32767 / (2 * stages)) + ")");
  if ((o.schedule == PipelineSchedule::kZeroBubbleH1 || o.schedule == PipelineSchedule::kZeroBubbleV) &&
      o.microbatches < pp_size)
    throw UsageError("paratorch: PipelineOptions::microbatches = " + std::to_string(o.microbatches) +
                     " is below the pp group's size " + std::to_string(pp_size) + ", which " + schedule_field(o.schedule) +
                     " needs; raise PipelineOptions::microbatches or use PipelineSchedule::kOneFOneB");
  return shape;
}

void check_batch(const PipelineOptions& o, const torch::Tensor& input, const torch::Tensor& target) {
  if (!input.defined() || input.dim() == 0 || !target.defined() || target.dim() == 0)
    throw UsageError("paratorch: Pipeline::step needs input and target with a batch dimension (dim 0) on every rank");
  const int64_t batch = input.size(0);
  if (target.size(0) != batch)
    throw UsageError("paratorch: Pipeline::step: target has " + std::to_string(target.size(0)) +
                     " samples but input has " + std::to_string(batch));
  if (batch % o.microbatches != 0)
    throw UsageError("paratorch: PipelineOptions::microbatches = " + std::to_string(o.microbatches) +
                     " does not divide the batch of " + std::to_string(batch) +
                     "; choose a divisor of the batch size");
}

}  // namespace paratorch::parallel::pipeline
