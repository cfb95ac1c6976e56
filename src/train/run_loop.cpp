// src/train/run_loop.cpp — see run_loop.h. Read run_loop top to bottom.
#include "train/run_loop.h"

#include "report/metrics.h"
#include "report/progress.h"
#include "report/trace.h"
#include "train/run_cadence.h"
#include "train/run_history.h"
#include "train/run_reporter.h"
#include <paratorch/communicator.h>

#include <chrono>
#include <cstdio>
#include <memory>

namespace paratorch::train {
namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// What rank 0 shows and writes: metrics.jsonl and loss.svg (RunReporter), and
// the progress line.
class LoopOutput {
 public:
  LoopOutput(StepRunner& runner, int64_t first_step)
      : runner_(runner),
        reporter_(runner.config(), runner.dataset(), first_step),  // a resume trims metrics.jsonl
        progress_(runner.config().train.steps, runner.dataset().throughput_unit(), report::stdout_is_terminal()) {}

  void line(int64_t step, const StepOutcome& o, double ms, const std::optional<Validation>& val, double elapsed_s) {
    report::StepMetrics m = reporter_.line(step, o.loss, o.lr, ms);
    m.grad_norm = o.grad_norm;
    m.extra = o.extra;
    if (val && val->measured) add_validation_fields(m, runner_.config().model.name, val->loss, val->accuracy);
    std::string shown = val && !val->measured ? " none measured" : "";
    for (const auto& [key, value] : m.extra) shown += " " + key + "=" + std::to_string(value);
    for (const auto& [key, value] : o.counters) m.extra[key] = value;
    reporter_.write(m);
    progress_.update(step, o.loss, m.throughput, elapsed_s);
    if (val) {
      progress_.finish();
      std::printf("validation at step %lld:%s\n", static_cast<long long>(step), shown.c_str());
      std::fflush(stdout);
    }
  }
  // Between lines, a terminal's progress line still moves.
  void progress(int64_t step, double loss, double ms, double elapsed_s) {
    if (report::stdout_is_terminal()) progress_.update(step, loss, reporter_.throughput(ms), elapsed_s);
  }
  void finish() {
    progress_.finish();
    reporter_.finish(runner_.plot_suffix());
  }

 private:
  StepRunner& runner_;
  RunReporter reporter_;
  report::ProgressLine progress_;
};

}  // namespace

TrainResult run_loop(StepRunner& runner, const std::string& resume_dir) {
  World& world = runner.world();
  const Config& config = runner.config();
  const int64_t start = runner.begin(resume_dir);
  report::Tracer::instance().clear();  // this run's spans only
  report::Tracer::instance().enable(world.rank());
  std::unique_ptr<LoopOutput> out;
  if (world.rank() == 0) {
    out = std::make_unique<LoopOutput>(runner, start);
    runner.announce(start);
  }
  const RunCadence cadence(config.train);
  const double started = now_s();
  double loss = 0, step_ms_sum = 0;
  int64_t timed_steps = 0;
  Validation last_validation;
  for (int64_t s = start; s < cadence.steps(); ++s) {
    if (!RunCadence::traces(s - start)) report::Tracer::instance().disable();
    const double t0 = now_s();
    const StepOutcome o = runner.step(s);
    const double ms = o.ms ? *o.ms : (now_s() - t0) * 1000;
    loss = o.loss;
    if (s > start || cadence.steps() - start == 1) step_ms_sum += ms, ++timed_steps;  // the first step warms up
    std::optional<Validation> val;
    if (cadence.validates_mid_run(s + 1) || cadence.last(s + 1)) val = last_validation = runner.validate();
    if (out && (cadence.logs(s + 1) || s == start))
      out->line(s + 1, o, ms, val, now_s() - started);
    else if (out)
      out->progress(s + 1, o.loss, ms, now_s() - started);
    if (cadence.checkpoints(s + 1)) runner.checkpoint(s + 1);
  }
  runner.write_trace(config.train.out_dir + "/trace.json");
  runner.finish();
  if (out) out->finish();
  TrainResult result = run_result(config, runner.dataset(), runner.final_loss(loss, last_validation),
                                  timed_steps ? step_ms_sum / static_cast<double>(timed_steps) : 0);
  result.peak_rss_mb = runner.job_peak_rss_mb();
  return result;
}

void StepRunner::write_trace(const std::string& path) { report::write_trace(*world().comm(), path); }

double StepRunner::job_peak_rss_mb() {
  auto rss = torch::tensor({peak_rss_mb()}, torch::kDouble);
  world().comm()->all_reduce(rss, ReduceOp::kMax);
  return rss.item<double>();
}

}  // namespace paratorch::train
