// src/plan/report.h — how `paratorch plan` and `paratorch simulate` print a
// prediction: a table, one contract line per layout, and JSON.
//
// The contract line (scripts build on it; docs/plan.md):
//   <prefix>layout=dp=A,pp=B,tp=C zero=S microbatch_size=M schedule=X
//   recompute=0|1 step_s=T tokens_per_s=K tflops_per_gpu=F mfu=U mem_gb=G
#pragma once
#include "plan/predict.h"

#include <string>

namespace paratorch::plan {

/// The contract line after `prefix` ("simulate: ", "plan: best ").
std::string contract_line(const std::string& prefix, const Prediction& p);
/// Several lines: the time and memory breakdowns, and whether it fits.
std::string breakdown_text(const Prediction& p, double memory_gb);
/// One JSON object with the contract fields and both breakdowns.
std::string prediction_json(const Prediction& p);
/// The simulated step as an SVG Gantt chart (pipeline/timeline.h's renderer,
/// the one behind the measured pipeline.svg).
std::string simulated_gantt_svg(const Prediction& p, const std::string& title);

}  // namespace paratorch::plan
