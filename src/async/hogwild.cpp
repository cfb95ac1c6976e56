// src/async/hogwild.cpp — see hogwild.h.
#include "async/hogwild.h"

#include "async/async_layout.h"
#include "async/ps_logger.h"
#include "async/ps_protocol.h"
#include "async/ps_trace.h"
#include "async/validation.h"
#include "data/dataset.h"
#include "report/metrics.h"
#include "report/trace.h"
#include "train/checkpoint.h"
#include "train/lr_schedule.h"
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <mutex>
#include <thread>

namespace paratorch::async {
namespace {


struct Shared {
  const train::Config& config;
  std::unique_ptr<data::Dataset> dataset;
  std::shared_ptr<models::BundledModel> model;
  std::vector<torch::Tensor> params;
  train::LrSchedule schedule;
  DistributedSampler batches;
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex log_mutex;  // metrics only; never held during an update
  std::unique_ptr<report::MetricsWriter> metrics;
  std::string error;
  double started = 0;

  explicit Shared(const train::Config& c) : config(c), batches(c.data.global_batch, 0, 1) {}
};

// p -= lr * (g + wd * p), writing only the rows g touches when that is a
// minority of a matrix's rows (the sparse case Hogwild is made for).
void sgd_update(const torch::Tensor& param, const torch::Tensor& grad, double lr, double wd) {
  auto p = param.data();  // own version counter: other threads' saved tensors stay valid
  const bool decays = p.dim() >= 2 && wd != 0;
  if (p.dim() >= 2) {
    auto touched = grad.reshape({grad.size(0), -1}).abs().sum(1).nonzero().reshape({-1});
    if (touched.numel() * 2 < p.size(0)) {
      auto g = grad.index_select(0, touched);
      if (decays) g = g.add(p.index_select(0, touched), wd);
      p.index_add_(0, touched, g, -lr);
      return;
    }
  }
  if (decays) p.add_(p, -lr * wd);
  p.add_(grad, -lr);
}

void log_step(Shared& sh, int64_t s, double loss, double lr, double ms, double validation) {
  const int64_t step = s + 1;
  if (step % sh.config.train.log_every != 0 && step != sh.config.train.steps) return;
  std::lock_guard<std::mutex> lock(sh.log_mutex);
  report::StepMetrics m;
  m.step = step;
  m.loss = loss;
  m.lr = lr;
  m.step_ms = ms;
  m.throughput = static_cast<double>(sh.config.data.global_batch * sh.dataset->items_per_sample()) / (ms / 1000);
  m.throughput_unit = sh.dataset->throughput_unit();
  std::string val;
  if (std::isfinite(validation)) {
    m.extra["val_loss"] = validation;
    val = " val_loss " + std::to_string(validation);
  }
  sh.metrics->write(m);
  std::printf("step %lld loss %.4f (thread-local step %.1f ms)%s\n", static_cast<long long>(step), loss, ms, val.c_str());
  std::fflush(stdout);
}

void run_thread(Shared& sh, int64_t* steps_done) {
  try {
    for (int64_t s = sh.next++; s < sh.config.train.steps && !sh.failed; s = sh.next++, ++*steps_done) {
      const double t0 = now_s();
      if (s == kTracedSteps) report::Tracer::instance().disable();
      auto batch = sh.dataset->train_batch(sh.batches.global_indices(s));
      std::vector<torch::Tensor> grads;
      torch::Tensor loss;
      {
        report::Tracer::Span span("forward_backward", "compute");
        loss = sh.model->loss(batch);
        grads = torch::autograd::grad({loss}, sh.params, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                      /*create_graph=*/false, /*allow_unused=*/true);
      }
      const double value = loss.item<double>();
      if (!std::isfinite(value))
        throw RuntimeFailure("paratorch: hogwild loss is " + std::to_string(value) + " at step " +
                             std::to_string(s + 1) + "; lower [optim] lr or set [optim] grad_clip");
      double scale = 1;
      if (sh.config.optim.grad_clip > 0) {
        double sq = 0;
        for (const auto& g : grads)
          if (g.defined()) sq += g.pow(2).sum().item<double>();
        const double norm = std::sqrt(sq);
        if (norm > sh.config.optim.grad_clip) scale = sh.config.optim.grad_clip / (norm + 1e-6);
      }
      const double lr = sh.schedule.at(s);
      torch::NoGradGuard no_grad;
      {
        report::Tracer::Span span("hogwild_update", "compute");
        for (size_t i = 0; i < grads.size(); ++i)
          if (grads[i].defined()) sgd_update(sh.params[i], scale == 1 ? grads[i] : grads[i] * scale, lr,
                                             sh.config.optim.weight_decay);
      }
      const double ms = (now_s() - t0) * 1000;
      // Mid-run validation, as the synchronous trainer's: on the shared
      // parameters as they are now (the other threads keep updating them).
      double validation = std::numeric_limits<double>::quiet_NaN();
      if (validates_at(s + 1, sh.config.train.log_every, sh.config.train.steps)) {
        report::Tracer::Span span("validation", "compute");
        validation = validation_loss(*sh.model, *sh.dataset, sh.config.data.global_batch);
      }
      log_step(sh, s, value, lr, ms, validation);
    }
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(sh.log_mutex);
    if (!sh.failed.exchange(true)) sh.error = e.what();
  }
}

}  // namespace

train::TrainResult run_hogwild(World& world, const train::Config& config, const std::string& resume_dir) {
  check_async_layout(config, world.size());
  Shared sh(config);
  sh.dataset = data::make_dataset(config.data.source, config.model, static_cast<uint64_t>(config.train.seed));
  sh.model = models::make_model(config.model);
  sh.model->initialize(static_cast<uint64_t>(config.train.seed));
  for (const auto& item : sh.model->named_parameters(true)) sh.params.push_back(item.value());
  sh.schedule = train::LrSchedule{config.optim.lr, config.optim.warmup_steps, config.train.steps};
  int64_t start = 0;
  if (!resume_dir.empty()) {
    train::Checkpoint ckpt = train::read_checkpoint(resume_dir);
    train::require_compatible(ckpt, config);
    torch::NoGradGuard no_grad;
    for (auto& item : sh.model->named_parameters(true)) item.value().copy_(ckpt.model.at(item.key()));
    start = ckpt.step;
  }
  sh.next = start;
  std::filesystem::create_directories(config.train.out_dir);
  sh.metrics = std::make_unique<report::MetricsWriter>(config.train.out_dir + "/metrics.jsonl", start > 0);
  const int threads = hogwild_threads(config);
  std::printf("paratorch train: %s; hogwild: %d threads share one parameter copy, lock-free SGD; steps %lld..%d -> %s\n",
              sh.dataset->describe().c_str(), threads, static_cast<long long>(start), config.train.steps,
              config.train.out_dir.c_str());
  std::fflush(stdout);
  report::Tracer::instance().clear();  // this run's spans only
  report::Tracer::instance().enable(world.rank());
  const int intra = torch::get_num_threads();
  torch::set_num_threads(1);
  const double t0 = now_s();
  std::vector<std::thread> pool;
  std::vector<int64_t> steps_done(static_cast<size_t>(threads), 0);
  for (int i = 0; i < threads; ++i) pool.emplace_back(run_thread, std::ref(sh), &steps_done[static_cast<size_t>(i)]);
  for (auto& t : pool) t.join();
  const double seconds = now_s() - t0;
  torch::set_num_threads(intra);
  if (sh.failed) throw RuntimeFailure(sh.error);

  train::TrainResult result;
  result.steps = config.train.steps;
  result.final_loss = validation_loss(*sh.model, *sh.dataset, config.data.global_batch);
  result.mean_step_ms = seconds * 1000 / static_cast<double>(config.train.steps - start);
  result.unit = sh.dataset->throughput_unit();
  result.throughput = static_cast<double>((config.train.steps - start) * config.data.global_batch *
                                          sh.dataset->items_per_sample()) / seconds;
  result.peak_rss_mb = train::peak_rss_mb();
  report::StepMetrics m;
  m.step = config.train.steps;
  m.loss = result.final_loss;
  m.step_ms = result.mean_step_ms;
  m.throughput = result.throughput;
  m.throughput_unit = result.unit;
  m.extra["val_loss"] = result.final_loss;
  if (config.model.name == "mf") m.extra["val_rmse"] = std::sqrt(result.final_loss);
  m.extra["hogwild_threads"] = threads;
  std::printf("paratorch hogwild: steps per thread:");
  for (int i = 0; i < threads; ++i) {
    m.extra["thread" + std::to_string(i) + "_steps"] = static_cast<double>(steps_done[static_cast<size_t>(i)]);
    std::printf(" %lld", static_cast<long long>(steps_done[static_cast<size_t>(i)]));
  }
  std::printf("\n");
  sh.metrics->write(m);
  train::Checkpoint ckpt;
  ckpt.step = config.train.steps;
  ckpt.config_toml = train::to_toml(config);
  ckpt.layout = "hogwild threads=" + std::to_string(threads);
  ckpt.world_size = 1;
  for (const auto& item : sh.model->named_parameters(true)) ckpt.model[item.key()] = item.value().detach();
  ckpt.optimizer["step"] = torch::tensor(static_cast<int64_t>(config.train.steps), torch::kLong);
  train::write_checkpoint(config.train.out_dir + "/checkpoints", ckpt);
  report::write_trace(*world.comm(), config.train.out_dir + "/trace.json");  // one rank: no peers to wait for
  return result;
}

}  // namespace paratorch::async
