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
  if (virtual_stages > 1 && schedule != PipelineSchedule::kInterleaved)
    throw UsageError("paratorch: PipelineOptions::virtual_stages = " + std::to_string(virtual_stages) +
                     " needs PipelineOptions::schedule = PipelineSchedule::kInterleaved, got " +
                     parallel::pipeline::schedule_field(schedule));
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
  }
  return "1f1b";
}

PipelineSchedule schedule_from_name(const std::string& name) {
  for (auto s : {PipelineSchedule::kGPipe, PipelineSchedule::kOneFOneB, PipelineSchedule::kInterleaved})
    if (schedule_name(s) == name) return s;
  throw UsageError("paratorch: schedule \"" + name + "\" is unknown; valid schedules: gpipe, 1f1b, interleaved");
}

std::string schedule_field(PipelineSchedule schedule) {
  switch (schedule) {
    case PipelineSchedule::kGPipe: return "PipelineSchedule::kGPipe";
    case PipelineSchedule::kOneFOneB: return "PipelineSchedule::kOneFOneB";
    case PipelineSchedule::kInterleaved: return "PipelineSchedule::kInterleaved";
  }
  return "?";
}

::paratorch::pipeline::PipelineShape check_shape(const PipelineOptions& o, int pp_size, int n_blocks) {
  const int stages = pp_size * o.virtual_stages;
  const std::string group = "the pp group of " + std::to_string(pp_size) + " rank(s)" +
                            (o.virtual_stages > 1 ? " x PipelineOptions::virtual_stages = " +
                                                        std::to_string(o.virtual_stages) : std::string());
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
  return {pp_size, o.microbatches, o.virtual_stages};
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
