// src/train/ps_trainer.cpp — see ps_trainer.h.
#include "train/ps_trainer.h"

#include "parallel/async/ps_faults.h"
#include "parallel/async/ps_protocol.h"
#include "parallel/async/ps_trace.h"
#include "parallel/async/ps_worker.h"
#include "parallel/async/validation.h"
#include "report/trace.h"
#include "train/async_layout.h"
#include "train/ps_job.h"
#include "train/ps_server_runner.h"
#include "train/run_cadence.h"
#include "train/run_loop.h"
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <limits>
#include <optional>

namespace paratorch::async {
namespace {

// ---- workers --------------------------------------------------------------------

train::TrainResult run_worker(Job& job) {
  const int rank = job.world.rank(), index = rank - job.servers;
  const Injection inj = read_injection();
  WorkerOptions options;
  options.workers = job.workers;
  options.timeout_s = job.config.comm.timeout_s;
  options.timeout_option = "[comm] timeout_s";
  options.grad_clip = job.config.optim.grad_clip;
  if (inj.straggler_rank == rank) options.delay_factor = inj.factor;
  std::vector<torch::Tensor> params;
  for (const auto& item : job.model->named_parameters(true)) params.push_back(item.value());
  Worker worker(job.world.comm(), job.plan, std::move(params), options);
  auto first = torch::tensor({std::numeric_limits<int64_t>::max()}, torch::kLong);
  job.world.comm()->all_reduce(first, ReduceOp::kMin);
  const int64_t start = first.item<int64_t>();
  const bool shared = job.config.parallel.staleness < 0;  // slots from server 0 (ServerOptions::assign_slots)
  std::optional<ValidationSet> validation_set;  // built at this worker's first validation
  const train::RunCadence cadence(job.config.train);
  const double t0 = now_s();
  double loss = 0;
  int64_t steps = 0;
  for (int64_t t = start; shared || t < job.config.train.steps; ++t) {
    if (inj.kill_rank == rank && steps == inj.kill_step) {
      std::fprintf(stderr, "paratorch: PARATORCH_PS_KILL: worker rank %d stops dead after %lld steps\n", rank,
                   static_cast<long long>(steps));
      return {};
    }
    if (inj.crash_rank == rank && steps == inj.crash_step) {
      std::fprintf(stderr, "paratorch: PARATORCH_PS_CRASH: worker rank %d kills itself (SIGKILL) after %lld steps\n",
                   rank, static_cast<long long>(steps));
      std::fflush(stderr);
      std::raise(SIGKILL);
    }
    if (steps == train::RunCadence::kTracedSteps) report::Tracer::instance().disable();
    const int64_t slot = worker.pull(t);
    if (shared && slot < 0) break;
    // Slot g is worker g % W's share of global step g / W: the samples the
    // synchronous run computes, in the same order.
    const int64_t step = shared ? slot / job.workers : t;
    const int share = shared ? static_cast<int>(slot % job.workers) : index;
    double validation = std::numeric_limits<double>::quiet_NaN();  // mid-run validation: ps_server_runner.h
    if (share == 0 && cadence.validates_mid_run(step)) {
      report::Tracer::Span span("validation", "compute");
      if (!validation_set) validation_set.emplace(*job.dataset, job.config.data.global_batch);
      validation = validation_set->loss(*job.model);
    }
    const auto batch =
        job.dataset->train_batch(DistributedSampler(job.config.data.global_batch, share, job.workers).local_indices(step));
    loss = compute_and_push(worker, *job.model, batch, step, validation);
    ++steps;
    if (!std::isfinite(loss))
      throw RuntimeFailure("paratorch: ps worker rank " + std::to_string(rank) + " has loss " + std::to_string(loss) +
                           " at step " + std::to_string(step + 1) + "; lower [optim] lr or set [optim] grad_clip");
  }
  worker.report(steps, now_s() - t0, loss);
  worker.done();
  send_trace(*job.world.comm(), 2 * job.config.comm.timeout_s);
  return {};
}

}  // namespace

train::TrainResult run_parameter_server(World& world, const train::Config& config, const std::string& resume_dir) {
  check_async_layout(config, world.size());
  Job job(world, config);
  if (world.rank() < job.servers) {
    PsServerRunner runner(job);
    return train::run_loop(runner, resume_dir);
  }
  report::Tracer::instance().clear();  // this run's spans only
  report::Tracer::instance().enable(world.rank());
  try {
    return run_worker(job);
  } catch (...) {
    // Tell the servers at once rather than leave them to find us silent.
    leave_servers(*world.comm(), job.servers);
    throw;
  }
}

}  // namespace paratorch::async
