// src/parallel/async/hogwild.cpp — paratorch::hogwild: lock-free parallel
// SGD over the threads of one process sharing one module (Niu, Recht, Ré &
// Wright, 2011, "Hogwild!: A lock-free approach to parallelizing stochastic
// gradient descent"). `paratorch train` mode "hogwild" (src/train/hogwild_runner.cpp)
// runs the bundled models through it.
#include <paratorch/async.h>
#include <paratorch/errors.h>

#include "parallel/grad_norm.h"
#include "report/trace.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <thread>

namespace paratorch {
namespace {

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// p -= lr * (g + wd * p), writing only the rows g touches when that is a
// minority of a matrix's rows (the sparse case Hogwild is made for: another
// thread's rows are left alone instead of rewritten with a stale value).
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

// The factor that brings the step's global gradient norm down to `clip`.
double clip_scale(const std::vector<torch::Tensor>& grads, double clip) {
  if (clip <= 0) return 1;
  double sq = 0;
  for (const auto& g : grads)
    sq += parallel::sum_of_squares(g);
  const double norm = std::sqrt(sq);
  return norm > clip ? clip / (norm + 1e-6) : 1;
}

struct Run {
  std::vector<torch::Tensor> params;
  std::function<torch::Tensor(int64_t)> loss_of;
  HogwildOptions options;
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::exception_ptr error;
};

void one_step(Run& run, int64_t s) {
  std::vector<torch::Tensor> grads;
  torch::Tensor loss;
  {
    report::Tracer::Span span("forward_backward", "compute");
    loss = run.loss_of(s);
    grads = torch::autograd::grad({loss}, run.params, /*grad_outputs=*/{}, /*retain_graph=*/false,
                                  /*create_graph=*/false, /*allow_unused=*/true);
  }
  bool any = false;
  for (const auto& g : grads) any = any || g.defined();
  if (!any)
    throw UsageError("paratorch: hogwild's loss of step " + std::to_string(s) +
                     " depends on no parameter of the module; build it from the module's forward");
  const double value = loss.item<double>();
  if (!std::isfinite(value))
    throw RuntimeFailure("paratorch: hogwild loss is " + std::to_string(value) + " at step " + std::to_string(s + 1) +
                         "; lower HogwildOptions::lr or set HogwildOptions::grad_clip");
  const double scale = clip_scale(grads, run.options.grad_clip);
  const double lr = run.options.lr_at ? run.options.lr_at(s) : run.options.lr;
  {
    torch::NoGradGuard no_grad;
    report::Tracer::Span span("hogwild_update", "compute");
    for (size_t i = 0; i < grads.size(); ++i)
      if (grads[i].defined())
        sgd_update(run.params[i], scale == 1 ? grads[i] : grads[i] * scale, lr, run.options.weight_decay);
  }
  if (run.options.on_step) run.options.on_step(s, value, lr);
}

void run_thread(Run& run, int64_t* steps_done) {
  try {
    for (int64_t s = run.next++; s < run.options.steps && !run.failed; s = run.next++, ++*steps_done) one_step(run, s);
  } catch (...) {
    std::lock_guard<std::mutex> lock(run.error_mutex);
    if (!run.failed.exchange(true)) run.error = std::current_exception();
  }
}

}  // namespace

void HogwildOptions::validate() const {
  if (steps < 0) throw UsageError("paratorch: HogwildOptions::steps = " + std::to_string(steps) + " must be >= 0");
  if (first_step < 0 || first_step > steps)
    throw UsageError("paratorch: HogwildOptions::first_step = " + std::to_string(first_step) + " must be in [0, steps = " +
                     std::to_string(steps) + "]");
  if (!(lr > 0) && !lr_at) throw UsageError("paratorch: HogwildOptions::lr = " + std::to_string(lr) + " must be > 0");
  if (weight_decay < 0)
    throw UsageError("paratorch: HogwildOptions::weight_decay = " + std::to_string(weight_decay) + " must be >= 0");
  if (grad_clip < 0)
    throw UsageError("paratorch: HogwildOptions::grad_clip = " + std::to_string(grad_clip) + " must be >= 0 (0 = off)");
}

HogwildReport hogwild(std::shared_ptr<torch::nn::Module> module, int threads,
                      std::function<torch::Tensor(int64_t step)> loss_of, HogwildOptions options) {
  options.validate();
  if (threads < 1) throw UsageError("paratorch: hogwild threads = " + std::to_string(threads) + " must be >= 1");
  if (!module) throw UsageError("paratorch: hogwild got a null module");
  if (!loss_of) throw UsageError("paratorch: hogwild got an empty loss function");
  Run run;
  for (const auto& p : module->parameters(/*recurse=*/true))
    if (p.requires_grad()) run.params.push_back(p);
  if (run.params.empty())
    throw UsageError("paratorch: hogwild's module has no parameter that requires a gradient; there is nothing to train");
  run.loss_of = std::move(loss_of);
  run.options = std::move(options);
  run.next = run.options.first_step;
  // The parallelism is the SGD threads; torch's own pool would oversubscribe the cores.
  const int intra = torch::get_num_threads();
  torch::set_num_threads(1);
  HogwildReport report;
  report.steps_per_thread.assign(static_cast<size_t>(threads), 0);
  const double t0 = seconds_now();
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back(run_thread, std::ref(run), &report.steps_per_thread[static_cast<size_t>(i)]);
  for (auto& t : pool) t.join();
  report.seconds = seconds_now() - t0;
  torch::set_num_threads(intra);
  if (run.error) std::rethrow_exception(run.error);
  return report;
}

}  // namespace paratorch
