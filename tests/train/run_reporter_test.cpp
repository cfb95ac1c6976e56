// tests/train/run_reporter_test.cpp — what every training loop writes through
// train::RunReporter: metrics lines with their throughput, a resume that
// drops the lines past the checkpoint, and loss.svg in step order even when
// steps are logged out of order (Hogwild's threads).
#include <gtest/gtest.h>

#include "data/dataset.h"
#include "train/config.h"
#include "train/run_reporter.h"

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

using namespace paratorch;
using namespace paratorch::train;

namespace {

Config reporter_config(const std::string& name) {
  Config c;
  c.model.name = "mlp";
  c.data.source = "synthetic";
  c.data.global_batch = 8;
  c.train.steps = 10;
  c.train.out_dir = (std::filesystem::temp_directory_path() / ("paratorch_reporter_" + name)).string();
  std::filesystem::remove_all(c.train.out_dir);
  return c;
}

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int lines_of(const std::string& text) {
  int n = 0;
  for (char ch : text) n += ch == '\n';
  return n;
}

}  // namespace

TEST(RunReporter, LinesCarryThroughputAndResumeDropsLaterLines) {
  Config c = reporter_config("resume");
  auto dataset = data::make_dataset(c.data.source, c.model, 1);
  {
    RunReporter r(c, *dataset, 0);
    for (int s = 1; s <= 6; ++s) r.write(r.line(s, 1.0 / s, 0.1, 4.0));
    EXPECT_DOUBLE_EQ(r.line(1, 1, 0, 4.0).throughput, 8 / 0.004);  // 8 samples per 4 ms step
  }
  EXPECT_EQ(lines_of(read(c.train.out_dir + "/metrics.jsonl")), 6);
  {
    RunReporter r(c, *dataset, 4);  // resumed from a checkpoint of step 4: steps 5, 6 are logged again
    r.write(r.line(5, 0.2, 0.1, 4.0));
  }
  const std::string text = read(c.train.out_dir + "/metrics.jsonl");
  EXPECT_EQ(lines_of(text), 5) << text;
  EXPECT_EQ(text.find("\"step\":6"), std::string::npos) << text;
}

TEST(RunReporter, LossSvgPointsInStepOrder) {
  Config c = reporter_config("order");
  auto dataset = data::make_dataset(c.data.source, c.model, 1);
  RunReporter r(c, *dataset, 0);
  for (int s : {2, 1, 4, 3, 6, 5}) r.write(r.line(s, 1.0, 0.1, 1.0));
  r.finish();
  const std::string svg = read(c.train.out_dir + "/loss.svg");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("points=\"([^\"]*)\""))) << svg;
  std::stringstream points(m[1].str());
  std::string point;
  double last_x = -1;
  int n = 0;
  while (points >> point) {
    const double x = std::stod(point.substr(0, point.find(',')));
    EXPECT_GT(x, last_x) << "training curve out of step order: " << m[1].str();
    last_x = x, ++n;
  }
  EXPECT_EQ(n, 6);
}
