// src/parallel/pipeline/timeline.cpp — see timeline.h.
#include "parallel/pipeline/timeline.h"

#include "report/svg_plot.h"
#include <paratorch/errors.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>

namespace paratorch::pipeline {
namespace {

// "F3.1" -> forward, micro-batch 3, chunk 1 (also B, I, W); false when the
// name is not one.
bool parse_compute_name(const std::string& name, ComputeSpan& span) {
  if (name.size() < 4 || std::string("FBIW").find(name[0]) == std::string::npos) return false;
  return std::sscanf(name.c_str() + 1, "%d.%d", &span.microbatch, &span.chunk) == 2 && (span.kind = name[0], true);
}

// Saturation and lightness of a span's colour (its hue is the micro-batch's):
// forward light, backward and I dark, W greyed, so the weight passes that
// fill the bubble stand out.
std::pair<int, int> tone_of(char kind) {
  if (kind == 'F') return {70, 72};
  if (kind == 'W') return {18, 58};
  return {70, 45};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::string svg_escape(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : std::string(1, c);
  return out;
}

}  // namespace

std::vector<double> StepTimeline::bubble() const {
  std::vector<double> out;
  const double window = end_us - start_us;
  for (const auto& spans : stages) {
    double busy = 0;
    for (const auto& s : spans) busy += s.end_us - s.start_us;
    out.push_back(window > 0 ? 1.0 - busy / window : 0.0);
  }
  return out;
}

std::vector<StepTimeline> read_pipeline_trace(const std::string& trace_json, const Layout& layout) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(trace_json);
  } catch (const std::exception& e) {
    throw RuntimeFailure(std::string("paratorch: trace.json is not valid JSON: ") + e.what());
  }
  if (!doc.contains("traceEvents")) throw RuntimeFailure("paratorch: trace.json has no traceEvents");
  // Per stage: step windows and compute spans, in time order.
  std::vector<std::vector<std::pair<double, double>>> windows(static_cast<size_t>(layout.pp));
  std::vector<std::vector<ComputeSpan>> spans(static_cast<size_t>(layout.pp));
  for (const auto& e : doc["traceEvents"]) {
    if (e.value("ph", "") != "X") continue;
    const int rank = e.value("pid", -1);
    if (rank < 0 || rank >= layout.world_size()) continue;
    const Coords c = layout.coords_of(rank);
    if (c.dp != 0 || c.tp != 0) continue;
    const double start = e.value("ts", 0.0), end = start + e.value("dur", 0.0);
    const std::string cat = e.value("cat", "");
    ComputeSpan span;
    if (cat == "pipeline_step") windows[static_cast<size_t>(c.pp)].emplace_back(start, end);
    else if (cat == "pipeline" && parse_compute_name(e.value("name", ""), span))
      span.start_us = start, span.end_us = end, spans[static_cast<size_t>(c.pp)].push_back(span);
  }
  size_t n_steps = windows.empty() ? 0 : windows[0].size();
  for (auto& w : windows) {
    std::sort(w.begin(), w.end());
    n_steps = std::min(n_steps, w.size());
  }
  std::vector<StepTimeline> steps(n_steps);
  for (size_t k = 0; k < n_steps; ++k) {
    StepTimeline& st = steps[k];
    st.stages.resize(static_cast<size_t>(layout.pp));
    st.start_us = 1e300, st.end_us = -1e300;
    for (int r = 0; r < layout.pp; ++r) {
      const auto [w0, w1] = windows[static_cast<size_t>(r)][k];
      for (const auto& s : spans[static_cast<size_t>(r)])
        if (s.start_us >= w0 && s.end_us <= w1) st.stages[static_cast<size_t>(r)].push_back(s);
      // The window runs from the first compute anywhere to the last compute anywhere.
      for (const auto& s : st.stages[static_cast<size_t>(r)])
        st.start_us = std::min(st.start_us, s.start_us), st.end_us = std::max(st.end_us, s.end_us);
    }
    if (st.start_us > st.end_us) st.start_us = st.end_us = 0;
  }
  return steps;
}

std::vector<double> measured_bubble(const std::vector<StepTimeline>& steps) {
  if (steps.empty()) return {};
  const size_t first = steps.size() > 2 ? 1 : 0;
  std::vector<double> out;
  for (size_t r = 0; r < steps[0].stages.size(); ++r) {
    std::vector<double> per_step;
    for (size_t k = first; k < steps.size(); ++k) per_step.push_back(steps[k].bubble()[r]);
    out.push_back(median(per_step));
  }
  return out;
}

std::string gantt_svg(const StepTimeline& step, const std::string& title) {
  const int rows = static_cast<int>(step.stages.size());
  const double left = 90, top = 40, row_h = 34, width = 900, plot_w = width - left - 20;
  const double height = top + rows * row_h + 50;
  const double span_us = std::max(step.end_us - step.start_us, 1.0);
  int microbatches = 1;
  for (const auto& spans : step.stages)
    for (const auto& s : spans) microbatches = std::max(microbatches, s.microbatch + 1);
  const auto bubble = step.bubble();
  std::string svg;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"11\">\n"
                "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                "<text x=\"%.0f\" y=\"22\" font-size=\"14\">%s</text>\n",
                width, height, left, svg_escape(title).c_str());
  svg += buf;
  for (int r = 0; r < rows; ++r) {
    const double y = top + r * row_h;
    std::snprintf(buf, sizeof buf,
                  "<text x=\"6\" y=\"%.1f\">stage %d</text><text x=\"6\" y=\"%.1f\" fill=\"#666\">idle %.0f%%</text>\n"
                  "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#f2f2f2\"/>\n",
                  y + 13, r, y + 26, 100 * bubble[static_cast<size_t>(r)], left, y + 2, plot_w, row_h - 4);
    svg += buf;
    for (const auto& s : step.stages[static_cast<size_t>(r)]) {
      const double x0 = left + (s.start_us - step.start_us) / span_us * plot_w;
      const double w = std::max((s.end_us - s.start_us) / span_us * plot_w, 0.5);
      const double hue = 360.0 * s.microbatch / microbatches;
      const auto [saturation, lightness] = tone_of(s.kind);
      std::snprintf(buf, sizeof buf,
                    "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"hsl(%.0f,%d%%,%d%%)\" stroke=\"white\" stroke-width=\"0.5\">"
                    "<title>%c%d chunk %d: %.0f us</title></rect>\n",
                    x0, y + 2, w, row_h - 4, hue, saturation, lightness, s.kind, s.microbatch, s.chunk,
                    s.end_us - s.start_us);
      svg += buf;
      if (w > 16) {
        std::snprintf(buf, sizeof buf, "<text x=\"%.2f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"9\">%c%d</text>\n",
                      x0 + w / 2, y + row_h / 2 + 3, s.kind, s.microbatch);
        svg += buf;
      }
    }
  }
  std::snprintf(buf, sizeof buf,
                "<text x=\"%.0f\" y=\"%.0f\" fill=\"#444\">time, %.2f ms per step; light = forward F, dark = backward B (or its input half I), greyed = weight half W, colour = micro-batch, grey = idle</text>\n</svg>\n",
                left, top + rows * row_h + 24, span_us / 1000);
  svg += buf;
  return svg;
}

std::string write_pipeline_report(const std::string& trace_path, const std::string& svg_path, const Layout& layout,
                                  double theory) {
  std::ifstream in(trace_path, std::ios::binary);
  if (!in) throw RuntimeFailure("paratorch: cannot read " + trace_path + " for the pipeline report");
  const auto steps = read_pipeline_trace(std::string(std::istreambuf_iterator<char>(in), {}), layout);
  if (steps.empty()) return "";
  const auto bubble = measured_bubble(steps);
  char buf[64];
  std::string line = "pipeline: measured bubble per stage";
  for (double b : bubble) std::snprintf(buf, sizeof buf, " %.3f", b), line += buf;
  std::snprintf(buf, sizeof buf, " (theory %.3f, %zu traced steps) -> ", theory, steps.size());
  line += buf + svg_path;
  report::write_text_file(svg_path, gantt_svg(steps.back(), "pipeline, last traced step: " + std::to_string(layout.pp) +
                                                               " stages (measured)"));
  return line;
}

}  // namespace paratorch::pipeline
