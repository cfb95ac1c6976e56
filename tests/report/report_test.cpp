// tests/report/report_test.cpp — metrics lines, SVG charts, trace events, progress text.
#include <gtest/gtest.h>

#include "report/metrics.h"
#include "report/progress.h"
#include "report/svg_plot.h"
#include "report/trace.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

using namespace paratorch::report;

TEST(Metrics, LineHasTheDesignKeys) {
  StepMetrics m;
  m.step = 7; m.loss = 2.5; m.lr = 1e-3; m.step_ms = 12.5; m.throughput = 1000; m.grad_norm = 0.7;
  m.throughput_unit = "tokens/s";
  m.extra["val_loss"] = 2.75;
  auto j = nlohmann::json::parse(to_json_line(m));
  EXPECT_EQ(j["step"], 7);
  EXPECT_DOUBLE_EQ(j["tokens_per_s"].get<double>(), 1000);
  EXPECT_FALSE(j.contains("samples_per_s"));
  EXPECT_DOUBLE_EQ(j["val_loss"].get<double>(), 2.75);
  for (const char* key : {"loss", "lr", "step_ms", "grad_norm"}) EXPECT_TRUE(j.contains(key)) << key;
}

// A run that measures no gradient norm (ps, hogwild) writes null, not 0.
TEST(Metrics, UnmeasuredGradNormIsNull) {
  StepMetrics m;
  m.step = 1; m.loss = 2.5;
  auto j = nlohmann::json::parse(to_json_line(m));
  ASSERT_TRUE(j.contains("grad_norm"));
  EXPECT_TRUE(j["grad_norm"].is_null());
  m.grad_norm = 0.0;  // a measured zero stays a number
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(to_json_line(m))["grad_norm"].get<double>(), 0.0);
}

TEST(Metrics, WriterAppendsOneLinePerStep) {
  std::string path = ::testing::TempDir() + "metrics_test.jsonl";
  {
    MetricsWriter w(path, false);
    StepMetrics m;
    for (int s = 0; s < 3; ++s) { m.step = s; w.write(m); }
  }
  {
    MetricsWriter w(path, /*append=*/true);
    StepMetrics m;
    m.step = 3;
    w.write(m);
  }
  std::ifstream in(path);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) EXPECT_EQ(nlohmann::json::parse(line)["step"], n++);
  EXPECT_EQ(n, 4);
}

TEST(SvgPlot, NiceTicksAndAWellFormedChart) {
  EXPECT_EQ(nice_ticks(0, 10, 5), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  auto t = nice_ticks(1.3, 3.1, 4);
  EXPECT_DOUBLE_EQ(t.front(), 1.5);
  EXPECT_DOUBLE_EQ(t.back(), 3.0);
  LineChart c{"loss", "step", "loss (nats)", {{"train", "#1f77b4", {{0, 5.5}, {10, 3.0}, {20, 2.1}}}}};
  std::string svg = c.to_svg();
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  EXPECT_NE(svg.find(">step<"), std::string::npos);
  EXPECT_NE(svg.find(">loss (nats)<"), std::string::npos);
}

TEST(Trace, SpansBecomeCompleteEventsOnlyWhenEnabled) {
  auto& tracer = Tracer::instance();
  tracer.clear();
  { Tracer::Span ignored("before", "test"); }
  EXPECT_EQ(tracer.event_count(), 0u);
  tracer.enable(3);
  { Tracer::Span s("forward", "compute"); }
  ASSERT_EQ(tracer.event_count(), 1u);
  auto events = nlohmann::json::parse("[" + tracer.events_json() + "]");
  ASSERT_EQ(events.size(), 2u);  // process name + the span
  EXPECT_EQ(events[1]["name"], "forward");
  EXPECT_EQ(events[1]["ph"], "X");
  EXPECT_EQ(events[1]["pid"], 3);
  EXPECT_GE(events[1]["dur"].get<int64_t>(), 0);
  tracer.clear();
}

TEST(Progress, FormatsStepLossThroughputAndEta) {
  ProgressLine p(100, "tokens/s", false);
  EXPECT_EQ(p.format(25, 2.34567, 1234.4, 30.0), "step 25/100  loss 2.3457  1234 tokens/s  eta 1:30");
}
