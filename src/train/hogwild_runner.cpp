// src/train/hogwild_runner.cpp — see hogwild_runner.h.
#include "train/hogwild_runner.h"

#include "train/async_layout.h"
#include "parallel/async/ps_protocol.h"
#include "parallel/async/validation.h"
#include "data/dataset.h"
#include "models/registry.h"
#include "report/trace.h"
#include "train/checkpoint.h"
#include "optim/lr_schedule.h"
#include "train/run_reporter.h"
#include <paratorch/async.h>
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace paratorch::async {
namespace {

// Steps the threads finished, until the loop takes them in order.
struct FinishedSteps {
  struct Step {
    double loss, lr, finished_s;
  };
  std::mutex mutex;
  std::condition_variable changed;
  std::map<int64_t, Step> steps;
  bool ended = false;        // hogwild() returned or threw
  bool stopping = false;     // the loop gave up: the threads stop at their next step
  std::exception_ptr error;  // what hogwild() threw
};

class HogwildRunner : public train::StepRunner {
 public:
  HogwildRunner(World& w, train::Config c)
      : world_(w), config_(std::move(c)), batches_(config_.data.global_batch, 0, 1) {
    check_async_layout(config_, world_.size());
    threads_ = hogwild_threads(config_);
    dataset_ = data::make_dataset(config_.data.source, config_.model, static_cast<uint64_t>(config_.train.seed));
    model_ = models::make_model(config_.model);
    model_->initialize(static_cast<uint64_t>(config_.train.seed));
    schedule_ = optim::LrSchedule{config_.optim.lr, config_.optim.warmup_steps, config_.train.steps};
  }
  ~HogwildRunner() override { stop(); }

  World& world() override { return world_; }
  const train::Config& config() const override { return config_; }
  const data::Dataset& dataset() const override { return *dataset_; }
  int64_t begin(const std::string& resume_dir) override;
  void announce(int64_t start) override;
  train::StepOutcome step(int64_t s) override;
  train::Validation validate() override {
    report::Tracer::Span span("validation", "compute");
    return {validation_loss(*model_, *dataset_, config_.data.global_batch), -1};
  }
  void checkpoint(int64_t steps_done) override;
  void finish() override {}
  /// The final parameters' validation loss: no single step's training loss
  /// stands for a Hogwild run, whose threads finish steps out of order.
  double final_loss(double, const train::Validation& final) const override { return final.loss; }
  std::string plot_suffix() const override { return " (hogwild)"; }

 private:
  void start_threads();
  void stop();

  World& world_;
  train::Config config_;
  DistributedSampler batches_;
  int threads_ = 1;
  std::unique_ptr<data::Dataset> dataset_;
  std::shared_ptr<models::BundledModel> model_;
  optim::LrSchedule schedule_;
  int64_t start_ = 0;
  FinishedSteps finished_;
  std::thread runner_;  // runs hogwild(), which runs the SGD threads
  HogwildReport report_;
  std::unique_ptr<StepPace> pace_;
};

int64_t HogwildRunner::begin(const std::string& resume_dir) {
  if (resume_dir.empty()) return start_ = 0;
  checkpoints::Checkpoint ckpt = train::read_checkpoint_to_resume(resume_dir);
  train::require_compatible(ckpt, config_);
  torch::NoGradGuard no_grad;
  for (auto& item : model_->named_parameters(true)) item.value().copy_(ckpt.model.at(item.key()));
  return start_ = ckpt.step;
}

void HogwildRunner::announce(int64_t start) {
  std::printf(
      "paratorch train: %s; hogwild: %d threads share one parameter copy, lock-free SGD; steps %lld..%d -> %s\n",
      dataset_->describe().c_str(), threads_, static_cast<long long>(start), config_.train.steps,
      config_.train.out_dir.c_str());
  std::fflush(stdout);
}

// hogwild() on a thread of its own: each SGD thread hands its finished steps over.
void HogwildRunner::start_threads() {
  HogwildOptions options;
  options.steps = config_.train.steps;
  options.first_step = start_;
  options.lr_at = [schedule = schedule_](int64_t step) { return schedule.at(step); };
  options.weight_decay = config_.optim.weight_decay;
  options.grad_clip = config_.optim.grad_clip;
  options.on_step = [this](int64_t s, double loss, double lr) {
    std::lock_guard<std::mutex> lock(finished_.mutex);
    if (finished_.stopping) throw RuntimeFailure("paratorch: hogwild stopped: the training loop ended early");
    finished_.steps[s] = {loss, lr, now_s()};
    finished_.changed.notify_all();
  };
  auto loss_of = [this](int64_t s) { return model_->loss(dataset_->train_batch(batches_.global_indices(s))); };
  pace_ = std::make_unique<StepPace>(threads_, now_s());
  runner_ = std::thread([this, options, loss_of] {
    HogwildReport report;
    std::exception_ptr error;
    try {
      report = hogwild(model_, threads_, loss_of, options);
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(finished_.mutex);
    report_ = std::move(report);
    finished_.error = error;
    finished_.ended = true;
    finished_.changed.notify_all();
  });
}

// Waits for step s; at the last step, for the threads to end too, whose
// step counts go into that line.
train::StepOutcome HogwildRunner::step(int64_t s) {
  if (!runner_.joinable()) start_threads();
  std::unique_lock<std::mutex> lock(finished_.mutex);
  finished_.changed.wait(lock, [&] { return finished_.steps.count(s) || finished_.ended; });
  auto it = finished_.steps.find(s);
  if (it == finished_.steps.end()) {
    lock.unlock();
    runner_.join();
    try {
      if (finished_.error) std::rethrow_exception(finished_.error);
    } catch (const RuntimeFailure& e) {
      throw RuntimeFailure(std::string(e.what()) + " (in the config: [optim] lr, [optim] grad_clip)");
    }
    throw RuntimeFailure("paratorch: hogwild's threads ended before step " + std::to_string(s + 1));
  }
  train::StepOutcome o;
  o.loss = it->second.loss;
  o.lr = it->second.lr;
  o.ms = pace_->ms(it->second.finished_s);
  finished_.steps.erase(it);
  lock.unlock();
  if (s + 1 == config_.train.steps) {
    runner_.join();
    if (finished_.error) std::rethrow_exception(finished_.error);
    o.extra["hogwild_threads"] = threads_;
    for (int i = 0; i < threads_; ++i)
      o.extra["thread" + std::to_string(i) + "_steps"] =
          static_cast<double>(report_.steps_per_thread[static_cast<size_t>(i)]);
  }
  return o;
}

// The shared parameters as they are now, saved as the checkpoint of
// `steps_done` steps. Copied first: the threads keep updating them (Hogwild
// takes no locks), so the copy is as consistent as any read of them is.
void HogwildRunner::checkpoint(int64_t steps_done) {
  report::Tracer::Span span("checkpoint", "io");
  checkpoints::Checkpoint ckpt;
  ckpt.step = steps_done;
  {
    torch::NoGradGuard no_grad;
    for (const auto& item : model_->named_parameters(true)) ckpt.model[item.key()] = item.value().detach().clone();
  }
  ckpt.optimizer["step"] = torch::tensor(steps_done, torch::kLong);
  train::save_run_checkpoint(config_, std::move(ckpt), "hogwild threads=" + std::to_string(threads_));
}

// The loop ended early (an error): the threads stop at their next step.
void HogwildRunner::stop() {
  if (!runner_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(finished_.mutex);
    finished_.stopping = true;
  }
  runner_.join();
}

}  // namespace

StepPace::StepPace(int window, double start_s) : window_(static_cast<size_t>(std::max(1, window))), done_by_{start_s} {}

double StepPace::ms(double finished_s) {
  done_by_.push_back(std::max(done_by_.back(), finished_s));
  const size_t n = std::min(window_, done_by_.size() - 1);
  return (done_by_.back() - done_by_[done_by_.size() - 1 - n]) * 1000 / static_cast<double>(n);
}

std::unique_ptr<train::StepRunner> make_hogwild_runner(World& world, train::Config config) {
  return std::make_unique<HogwildRunner>(world, std::move(config));
}

}  // namespace paratorch::async
