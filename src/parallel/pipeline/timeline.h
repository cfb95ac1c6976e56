// src/parallel/pipeline/timeline.h — the pipeline as it actually ran, read back from
// trace.json: the measured bubble of each stage and a Gantt chart.
//
// The executor records every forward and backward as a trace span of
// category "pipeline" named by its action ("F3.1": micro-batch 3, chunk 1)
// and every step as a "pipeline_step" span. For one step, a stage's bubble
// is the idle fraction of the step's window — from the first stage's start
// to the last stage's end — the quantity (p-1)/(m+p-1) predicts (GPipe,
// Huang et al. 2019; Megatron-LM, Narayanan et al. 2021).
#pragma once
#include <paratorch/layout.h>

#include <string>
#include <vector>

namespace paratorch::pipeline {

struct ComputeSpan {
  char kind = 'F';  // F forward, B backward, I and W its input and weight halves (zero-bubble schedules)
  int microbatch = 0, chunk = 0;
  double start_us = 0, end_us = 0;
};

/// One traced step: per pipeline stage (rank), its compute spans.
struct StepTimeline {
  double start_us = 0, end_us = 0;               // window over all stages
  std::vector<std::vector<ComputeSpan>> stages;  // index = pipeline rank
  /// Per stage: 1 - busy / window.
  std::vector<double> bubble() const;
};

/// The steps of pipeline replica dp = 0 (tp = 0) found in trace.json's text,
/// in order. RuntimeFailure when the text is not a trace.
std::vector<StepTimeline> read_pipeline_trace(const std::string& trace_json, const Layout& layout);

/// Per stage: the median over `steps` (the first is skipped as warm-up when
/// there are more than two) of the step's bubble.
std::vector<double> measured_bubble(const std::vector<StepTimeline>& steps);

/// An SVG Gantt chart of `step`: one row per stage, forward and backward
/// boxes coloured by micro-batch (backward darker), idle time left blank.
std::string gantt_svg(const StepTimeline& step, const std::string& title);

/// What the trainer does when pp > 1: reads `trace_path`, writes the Gantt
/// chart of the last traced step to `svg_path`, and returns one line with the
/// measured bubble per stage against `theory` ("" when nothing was traced).
std::string write_pipeline_report(const std::string& trace_path, const std::string& svg_path, const Layout& layout,
                                  double theory);

}  // namespace paratorch::pipeline
