// tests/train/run_loop_mpi_test.cpp — the training loop itself (run_loop.h),
// over a scripted runner on every rank: it takes the steps in order from the
// first one the runner resumes at, validates, logs and checkpoints where the
// cadence says, takes the runner's own step time when it gives one, and ends
// with the runner's outputs and final loss. Run under mpirun by CTest.
#include "train/run_loop.h"

#include "data/dataset.h"
#include "report/trace.h"
#include "mpi_test_env.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <vector>

namespace paratorch::train {
namespace {
namespace fs = std::filesystem;

class ScriptedRunner : public StepRunner {
 public:
  explicit ScriptedRunner(Config c) : config_(std::move(c)) {
    dataset_ = data::make_dataset(config_.data.source, config_.model, 1);
  }
  World& world() override { return test_world(); }
  const Config& config() const override { return config_; }
  const data::Dataset& dataset() const override { return *dataset_; }
  int64_t begin(const std::string& resume_dir) override { return resume_dir.empty() ? 0 : 4; }
  void announce(int64_t) override {}
  StepOutcome step(int64_t s) override {
    report::Tracer::Span span("scripted step", "compute");
    taken.push_back(s);
    StepOutcome o;
    o.loss = 10.0 - static_cast<double>(s);
    o.lr = 0.1;
    o.ms = 2.0 * static_cast<double>(s + 1);
    return o;
  }
  Validation validate() override { return {100.0 + static_cast<double>(++validations), -1}; }
  void checkpoint(int64_t steps_done) override { checkpoints.push_back(steps_done); }
  void finish() override { finished = true; }
  double final_loss(double last, const Validation& v) const override { return last + v.loss; }

  std::vector<int64_t> taken, checkpoints;
  int validations = 0;
  bool finished = false;

 private:
  Config config_;
  std::unique_ptr<data::Dataset> dataset_;
};

Config scripted_config(const std::string& out_dir) {
  Config c;
  c.model.name = "mlp";
  c.data.source = "synthetic";
  c.data.global_batch = 8;
  c.train.steps = 10;
  c.train.log_every = 1;  // mid-run validation every 5 steps
  c.train.checkpoint_every = 3;
  c.train.out_dir = out_dir;
  return c;
}

// metrics.jsonl's lines as (step, step_ms, val_loss or -1).
std::vector<std::vector<double>> lines_of(const std::string& path) {
  std::vector<std::vector<double>> lines;
  std::ifstream in(path);
  const std::regex step("\"step\":([0-9]+)"), ms("\"step_ms\":([0-9.]+)"), val("\"val_loss\":([0-9.]+)");
  for (std::string line; std::getline(in, line);) {
    std::smatch a, b, c;
    EXPECT_TRUE(std::regex_search(line, a, step) && std::regex_search(line, b, ms)) << line;
    lines.push_back({std::stod(a[1]), std::stod(b[1]), std::regex_search(line, c, val) ? std::stod(c[1]) : -1});
  }
  return lines;
}

TEST(RunLoop, StepsValidatesLogsAndCheckpointsOnTheCadence) {
  const fs::path dir = fs::path(PARATORCH_TEST_SCRATCH) / "run_loop";
  if (test_world().rank() == 0) fs::remove_all(dir);
  test_world().comm()->barrier();
  ScriptedRunner runner(scripted_config(dir.string()));
  const TrainResult r = run_loop(runner);
  EXPECT_EQ(runner.taken, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(runner.validations, 2) << "at step 5 (5 x log_every) and at the end";
  EXPECT_EQ(runner.checkpoints, (std::vector<int64_t>{3, 6, 9, 10}));
  EXPECT_TRUE(runner.finished);
  EXPECT_DOUBLE_EQ(r.final_loss, 1.0 + 102.0)
      << "the runner's final loss: the last step's loss and the final validation";
  EXPECT_DOUBLE_EQ(r.mean_step_ms, 12.0) << "the runner's step times (4, 6, ..., 20 ms), the first step left out";
  EXPECT_EQ(r.steps, 10);
  if (test_world().rank() != 0) return;
  const auto lines = lines_of((dir / "metrics.jsonl").string());
  ASSERT_EQ(lines.size(), 10u);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i][0], static_cast<double>(i + 1));
    EXPECT_DOUBLE_EQ(lines[i][1], 2.0 * static_cast<double>(i + 1));
    EXPECT_EQ(lines[i][2], i == 4 ? 101.0 : i == 9 ? 102.0 : -1.0) << "step " << i + 1;
  }
  EXPECT_TRUE(fs::exists(dir / "loss.svg"));
  // trace.json: the loop gathers every rank's spans; the runner writes none itself.
  std::ifstream trace_file(dir / "trace.json");
  const auto trace = nlohmann::json::parse(trace_file, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(trace.is_object() && trace.contains("traceEvents")) << "no trace.json from the loop";
  std::map<int, int> steps_by_rank;
  for (const auto& e : trace["traceEvents"])
    if (e.value("name", "") == "scripted step") ++steps_by_rank[e.value("pid", -1)];
  for (int rank = 0; rank < test_world().size(); ++rank)
    EXPECT_GT(steps_by_rank[rank], 0) << "rank " << rank << "'s traced steps are missing from trace.json";
}

// A resumed run starts at the runner's first step, logs that step and the
// ones after it, and keeps the lines an earlier run logged before it.
TEST(RunLoop, ResumesWhereTheRunnerSays) {
  const fs::path dir = fs::path(PARATORCH_TEST_SCRATCH) / "run_loop_resume";
  if (test_world().rank() == 0) fs::remove_all(dir);
  test_world().comm()->barrier();
  {
    ScriptedRunner first(scripted_config(dir.string()));
    run_loop(first);
  }
  test_world().comm()->barrier();
  ScriptedRunner runner(scripted_config(dir.string()));
  run_loop(runner, "a checkpoint of step 4");
  EXPECT_EQ(runner.taken, (std::vector<int64_t>{4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(runner.checkpoints, (std::vector<int64_t>{6, 9, 10}));
  if (test_world().rank() != 0) return;
  const auto lines = lines_of((dir / "metrics.jsonl").string());
  ASSERT_EQ(lines.size(), 10u) << "steps 1-4 kept, 5-10 written again";
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(lines[i][0], static_cast<double>(i + 1));
}

}  // namespace
}  // namespace paratorch::train
