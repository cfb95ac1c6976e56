// src/parallel/pipeline/options.h — the checks of PipelineOptions that need
// the pp group and the model, and the names the schedule library uses.
// Every message names the option field (or argument) to change.
#pragma once
#include "parallel/pipeline/schedule.h"
#include <paratorch/pipeline.h>

#include <string>

namespace paratorch::parallel::pipeline {

/// "gpipe" | "1f1b" | "interleaved" (parallel/pipeline/schedule.h's names).
std::string schedule_name(PipelineSchedule schedule);
/// The inverse of schedule_name; UsageError listing the names otherwise.
PipelineSchedule schedule_from_name(const std::string& name);
/// "PipelineSchedule::kOneFOneB" — for messages.
std::string schedule_field(PipelineSchedule schedule);

/// The group and the model's block count against the options: enough blocks
/// for pp_size × virtual_stages stages, split points for exactly that many,
/// micro-batches in groups of pp for kInterleaved. Returns the schedule's shape.
::paratorch::pipeline::PipelineShape check_shape(const PipelineOptions& options, int pp_size, int n_blocks);

/// UsageError when `batch` (input.size(0)) cannot be cut into the micro-batches.
void check_batch(const PipelineOptions& options, const torch::Tensor& input, const torch::Tensor& target);

}  // namespace paratorch::parallel::pipeline
