// src/train/hogwild_runner.cpp — see hogwild.h.
#include "train/hogwild_runner.h"

#include "train/async_layout.h"
#include "train/run_cadence.h"
#include "parallel/async/ps_protocol.h"
#include "parallel/async/ps_trace.h"
#include "parallel/async/validation.h"
#include "data/dataset.h"
#include "models/registry.h"
#include "report/metrics.h"
#include "report/trace.h"
#include "train/checkpoint.h"
#include "optim/lr_schedule.h"
#include "train/run_history.h"
#include "train/run_reporter.h"
#include <paratorch/async.h>
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <mutex>

namespace paratorch::async {
namespace {


struct Shared {
  const train::Config& config;
  std::unique_ptr<data::Dataset> dataset;
  std::shared_ptr<models::BundledModel> model;
  DistributedSampler batches;
  std::mutex log_mutex;  // metrics only; never held during an update
  std::mutex checkpoint_mutex;  // one checkpoint written at a time
  std::unique_ptr<train::RunReporter> reporter;
  train::RunCadence cadence;
  int threads = 1;

  explicit Shared(const train::Config& c) : config(c), batches(c.data.global_batch, 0, 1), cadence(c.train) {}
};

thread_local double step_started_s = 0;  // this thread's current step (for step_ms)

void log_step(Shared& sh, int64_t s, double loss, double lr, double ms, double validation) {
  const int64_t step = s + 1;
  if (!sh.cadence.logs(step)) return;
  std::lock_guard<std::mutex> lock(sh.log_mutex);
  report::StepMetrics m = sh.reporter->line(step, loss, lr, ms);
  std::string val;
  if (std::isfinite(validation)) {
    m.extra["val_loss"] = validation;
    val = " val_loss " + std::to_string(validation);
  }
  sh.reporter->write(m);
  std::printf("step %lld loss %.4f (thread-local step %.1f ms)%s\n", static_cast<long long>(step), loss, ms, val.c_str());
  std::fflush(stdout);
}

// The bundled model's loss on global batch s (what each Hogwild thread differentiates).
torch::Tensor batch_loss(Shared& sh, int64_t s) {
  step_started_s = now_s();
  if (s == train::RunCadence::kTracedSteps) report::Tracer::instance().disable();
  return sh.model->loss(sh.dataset->train_batch(sh.batches.global_indices(s)));
}

// The shared parameters as they are now, saved as the checkpoint of `step`
// steps done. Copied first: the other threads keep updating them (Hogwild
// takes no locks), so the copy is as consistent as any read of them is.
void save_checkpoint(Shared& sh, int64_t step) {
  std::lock_guard<std::mutex> lock(sh.checkpoint_mutex);
  report::Tracer::Span span("checkpoint", "io");
  train::Checkpoint ckpt;
  ckpt.step = step;
  {
    torch::NoGradGuard no_grad;
    for (const auto& item : sh.model->named_parameters(true)) ckpt.model[item.key()] = item.value().detach().clone();
  }
  ckpt.optimizer["step"] = torch::tensor(step, torch::kLong);
  train::save_run_checkpoint(sh.config, std::move(ckpt), "hogwild threads=" + std::to_string(sh.threads));
}

// After each update: mid-run validation, as the synchronous trainer's, on the
// shared parameters as they are now (the other threads keep updating them),
// and the checkpoints due during the run (the last is written at the end).
void after_step(Shared& sh, int64_t s, double loss, double lr) {
  const double ms = (now_s() - step_started_s) * 1000;
  double validation = std::numeric_limits<double>::quiet_NaN();
  if (sh.cadence.validates_mid_run(s + 1)) {
    report::Tracer::Span span("validation", "compute");
    validation = validation_loss(*sh.model, *sh.dataset, sh.config.data.global_batch);
  }
  log_step(sh, s, loss, lr, ms, validation);
  if (!sh.cadence.last(s + 1) && sh.cadence.checkpoints(s + 1)) save_checkpoint(sh, s + 1);
}

}  // namespace

train::TrainResult run_hogwild(World& world, const train::Config& config, const std::string& resume_dir) {
  check_async_layout(config, world.size());
  Shared sh(config);
  sh.dataset = data::make_dataset(config.data.source, config.model, static_cast<uint64_t>(config.train.seed));
  sh.model = models::make_model(config.model);
  sh.model->initialize(static_cast<uint64_t>(config.train.seed));
  const optim::LrSchedule schedule{config.optim.lr, config.optim.warmup_steps, config.train.steps};
  int64_t start = 0;
  if (!resume_dir.empty()) {
    train::Checkpoint ckpt = train::read_checkpoint_to_resume(resume_dir);
    train::require_compatible(ckpt, config);
    torch::NoGradGuard no_grad;
    for (auto& item : sh.model->named_parameters(true)) item.value().copy_(ckpt.model.at(item.key()));
    start = ckpt.step;
  }
  sh.reporter = std::make_unique<train::RunReporter>(config, *sh.dataset, start);  // a resume trims metrics.jsonl
  const int threads = hogwild_threads(config);
  sh.threads = threads;
  std::printf("paratorch train: %s; hogwild: %d threads share one parameter copy, lock-free SGD; steps %lld..%d -> %s\n",
              sh.dataset->describe().c_str(), threads, static_cast<long long>(start), config.train.steps,
              config.train.out_dir.c_str());
  std::fflush(stdout);
  report::Tracer::instance().clear();  // this run's spans only
  report::Tracer::instance().enable(world.rank());
  HogwildOptions options;
  options.steps = config.train.steps;
  options.first_step = start;
  options.lr_at = [schedule](int64_t step) { return schedule.at(step); };
  options.weight_decay = config.optim.weight_decay;
  options.grad_clip = config.optim.grad_clip;
  options.on_step = [&sh](int64_t s, double loss, double lr) { after_step(sh, s, loss, lr); };
  HogwildReport run;
  try {
    run = hogwild(sh.model, threads, [&sh](int64_t s) { return batch_loss(sh, s); }, options);
  } catch (const RuntimeFailure& e) {
    throw RuntimeFailure(std::string(e.what()) + " (in the config: [optim] lr, [optim] grad_clip)");
  }
  const double seconds = run.seconds;
  const auto& steps_done = run.steps_per_thread;

  const train::TrainResult result =
      train::run_result(config, *sh.dataset, validation_loss(*sh.model, *sh.dataset, config.data.global_batch),
                        seconds * 1000 / static_cast<double>(config.train.steps - start));
  report::StepMetrics m = sh.reporter->line(config.train.steps, result.final_loss, 0, result.mean_step_ms);
  train::add_validation_fields(m, config.model.name, result.final_loss, /*accuracy: not measured*/ -1);
  m.extra["hogwild_threads"] = threads;
  std::printf("paratorch hogwild: steps per thread:");
  for (int i = 0; i < threads; ++i) {
    m.extra["thread" + std::to_string(i) + "_steps"] = static_cast<double>(steps_done[static_cast<size_t>(i)]);
    std::printf(" %lld", static_cast<long long>(steps_done[static_cast<size_t>(i)]));
  }
  std::printf("\n");
  sh.reporter->write_final(m);
  sh.reporter->finish(" (hogwild)");
  save_checkpoint(sh, config.train.steps);
  report::write_trace(*world.comm(), config.train.out_dir + "/trace.json");  // one rank: no peers to wait for
  return result;
}

}  // namespace paratorch::async
