// src/plan/report.cpp — see report.h.
#include "plan/report.h"

#include "parallel/pipeline/timeline.h"

#include <nlohmann/json.hpp>

#include <cstdio>

namespace paratorch::plan {

std::string contract_line(const std::string& prefix, const Prediction& p) {
  const PlanLayout& L = p.layout;
  char line[512];
  std::snprintf(line, sizeof line,
                "%slayout=%s zero=%d microbatch_size=%lld schedule=%s recompute=%d step_s=%.4g tokens_per_s=%.4g "
                "tflops_per_gpu=%.4g mfu=%.4f mem_gb=%.4g",
                prefix.c_str(), L.layout_text().c_str(), L.zero, static_cast<long long>(L.microbatch_size),
                L.schedule_text().c_str(), L.recompute ? 1 : 0, p.step_s, p.tokens_per_s, p.tflops_per_gpu, p.mfu,
                p.memory.total() / 1e9);
  return line;
}

std::string breakdown_text(const Prediction& p, double memory_gb) {
  const auto& t = p.time;
  const auto& m = p.memory;
  char text[1024];
  std::snprintf(text, sizeof text,
                "  time per step %.4g s: compute %.4g, pipeline bubble %.4g, tp comm %.4g, p2p %.4g, exposed dp comm %.4g, "
                "optimizer %.4g\n"
                "  memory per accelerator %.4g GB of %.4g: parameters %.4g, gradients %.4g, optimizer state %.4g, "
                "activations %.4g%s\n",
                p.step_s, t.compute, t.bubble, t.tp_comm, t.p2p, t.dp_exposed, t.optimizer, m.total() / 1e9, memory_gb,
                m.parameters / 1e9, m.gradients / 1e9, m.optimizer / 1e9, m.activations / 1e9,
                p.fits ? "" : (" — does not fit: " + std::to_string(p.memory_over_gb) + " GB over").c_str());
  return text;
}

std::string prediction_json(const Prediction& p) {
  const PlanLayout& L = p.layout;
  nlohmann::json j;
  j["layout"] = L.layout_text();
  j["dp"] = L.dp, j["pp"] = L.pp, j["tp"] = L.tp, j["zero"] = L.zero;
  j["microbatch_size"] = L.microbatch_size;
  j["schedule"] = L.schedule_text();
  j["recompute"] = L.recompute;
  j["step_s"] = p.step_s, j["tokens_per_s"] = p.tokens_per_s, j["tflops_per_gpu"] = p.tflops_per_gpu, j["mfu"] = p.mfu;
  j["mem_gb"] = p.memory.total() / 1e9;
  j["fits"] = p.fits, j["memory_over_gb"] = p.memory_over_gb;
  j["memory_gb"] = {{"parameters", p.memory.parameters / 1e9}, {"gradients", p.memory.gradients / 1e9},
                    {"optimizer", p.memory.optimizer / 1e9}, {"activations", p.memory.activations / 1e9}};
  j["time_s"] = {{"compute", p.time.compute}, {"bubble", p.time.bubble}, {"tp_comm", p.time.tp_comm},
                 {"p2p", p.time.p2p}, {"dp_exposed", p.time.dp_exposed}, {"optimizer", p.time.optimizer}};
  return j.dump();
}

std::string simulated_gantt_svg(const Prediction& p, const std::string& title) {
  pipeline::StepTimeline step;
  step.start_us = 0;
  step.end_us = p.pipeline.makespan * 1e6;
  for (const auto& rank : p.pipeline.timeline) {
    std::vector<pipeline::ComputeSpan> spans;
    for (const auto& a : rank)
      spans.push_back({pipeline::to_string(a.action)[0], a.action.microbatch, a.action.chunk, a.start * 1e6, a.end * 1e6});
    step.stages.push_back(std::move(spans));
  }
  return pipeline::gantt_svg(step, title);
}

}  // namespace paratorch::plan
