// tests/parallel/pipeline/timeline_test.cpp — reading the pipeline back from a trace:
// a trace written from a simulated schedule gives the simulated bubble, and
// the Gantt chart draws every forward and backward.
#include "parallel/pipeline/simulator.h"
#include "parallel/pipeline/timeline.h"

#include <paratorch/errors.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace paratorch::pipeline {
namespace {

// trace.json as the trainer writes it, for `steps` simulated steps of the
// schedule on layout dp=2 (replica 1 gets noise that must be ignored).
std::string trace_of(const Schedule& s, int steps) {
  const Layout layout{2, s.shape.stages, 1};
  auto sim = simulate(s);
  nlohmann::json events = nlohmann::json::array();
  const double unit_us = 1000, gap_us = 5000;
  for (int k = 0; k < steps; ++k) {
    const double t0 = k * (sim.makespan * unit_us + gap_us);
    for (int r = 0; r < s.shape.stages; ++r) {
      const int rank = layout.rank_of({0, r, 0});
      events.push_back({{"name", "step"}, {"cat", "pipeline_step"}, {"ph", "X"}, {"ts", t0}, {"dur", sim.makespan * unit_us}, {"pid", rank}, {"tid", 0}});
      for (const auto& t : sim.timeline[static_cast<size_t>(r)])
        events.push_back({{"name", to_string(t.action)}, {"cat", "pipeline"}, {"ph", "X"}, {"ts", t0 + t.start * unit_us},
                          {"dur", (t.end - t.start) * unit_us}, {"pid", rank}, {"tid", 0}});
      // The other replica: a long forward that would spoil the measurement.
      events.push_back({{"name", "F0.0"}, {"cat", "pipeline"}, {"ph", "X"}, {"ts", t0}, {"dur", 1e6}, {"pid", layout.rank_of({1, r, 0})}, {"tid", 0}});
    }
  }
  return nlohmann::json{{"traceEvents", events}}.dump();
}

TEST(PipelineTimeline, TraceOfASimulatedScheduleGivesItsBubble) {
  for (const std::string name : {"gpipe", "1f1b", "interleaved"}) {
    const int v = name == "interleaved" ? 2 : 1;
    auto s = make_schedule(name, {4, 8, v});
    auto steps = read_pipeline_trace(trace_of(s, 3), Layout{2, 4, 1});
    ASSERT_EQ(steps.size(), 3u) << name;
    const double theory = theoretical_bubble(name, s.shape);
    for (double b : measured_bubble(steps)) EXPECT_NEAR(b, theory, 1e-6) << name;
    for (size_t r = 0; r < 4; ++r) EXPECT_EQ(steps[1].stages[r].size(), static_cast<size_t>(2 * 8 * v));
  }
}

TEST(PipelineTimeline, GanttChartDrawsEveryComputeBox) {
  auto s = make_schedule("1f1b", {2, 4, 1});
  auto steps = read_pipeline_trace(trace_of(s, 1), Layout{2, 2, 1});
  ASSERT_EQ(steps.size(), 1u);
  const std::string svg = gantt_svg(steps[0], "test <chart>");
  size_t boxes = 0;
  for (size_t at = svg.find("<title>"); at != std::string::npos; at = svg.find("<title>", at + 1)) ++boxes;
  EXPECT_EQ(boxes, 2u * 2 * 4);
  EXPECT_NE(svg.find("test &lt;chart&gt;"), std::string::npos);
  EXPECT_NE(svg.find("stage 1"), std::string::npos);
  EXPECT_THROW(read_pipeline_trace("not json", Layout{1, 2, 1}), RuntimeFailure);
}

}  // namespace
}  // namespace paratorch::pipeline
