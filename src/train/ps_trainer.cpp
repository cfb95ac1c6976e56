// src/train/ps_trainer.cpp — see ps_trainer.h.
#include "train/ps_trainer.h"

#include "train/async_layout.h"
#include "parallel/async/ps_faults.h"
#include "train/ps_logger.h"
#include "parallel/async/ps_protocol.h"
#include "parallel/async/ps_trace.h"
#include "parallel/async/ps_server.h"
#include "parallel/async/ps_worker.h"
#include "parallel/async/shard_plan.h"
#include "parallel/async/validation.h"
#include "data/dataset.h"
#include "models/registry.h"
#include "report/metrics.h"
#include "report/trace.h"
#include "train/checkpoint.h"
#include "train/run_history.h"
#include "train/run_reporter.h"
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>

namespace paratorch::async {
namespace {

constexpr int kShardTag = 7104;
constexpr int64_t kStatsWords = 2 + kStalenessBuckets;

struct Job {
  World& world;
  const train::Config& config;
  int servers, workers;
  std::vector<int64_t> local_pids;  // by world rank: its pid when on this node, else -1
  std::unique_ptr<data::Dataset> dataset;
  std::shared_ptr<models::BundledModel> model;
  std::map<std::string, torch::Tensor> full;
  ShardPlan plan;
  optim::LrSchedule schedule;

  Job(World& w, const train::Config& c) : world(w), config(c) {
    servers = config.parallel.servers;
    workers = ps_workers(config, world.size());
    dataset = data::make_dataset(config.data.source, config.model, static_cast<uint64_t>(config.train.seed));
    model = models::make_model(config.model);
    model->initialize(static_cast<uint64_t>(config.train.seed));
    std::vector<std::pair<std::string, torch::Tensor>> named;
    for (const auto& item : model->named_parameters(true)) {
      named.emplace_back(item.key(), item.value());
      full[item.key()] = item.value().detach();
    }
    plan = plan_shards(named, servers);
    schedule = optim::LrSchedule{config.optim.lr, config.optim.warmup_steps, config.train.steps};
  }
  std::string out(const std::string& file) const { return config.train.out_dir + "/" + file; }
  std::string layout() const {
    return "ps servers=" + std::to_string(servers) + " workers=" + std::to_string(workers);
  }
};

// ---- servers --------------------------------------------------------------------

void save_server(const Job& job, const Server& server, int k, int64_t step) {
  train::Checkpoint ckpt;
  ckpt.step = step;
  ckpt.model = server.shard();
  ckpt.optimizer = server.optimizer_state();
  train::save_run_checkpoint(job.config, std::move(ckpt), job.layout(), "checkpoints/server-" + std::to_string(k));
}

// Restores server k from a checkpoint of any layout: the servers' own
// (read_checkpoint joins their pieces into whole tensors, so another server
// count resumes too) or any other run's; returns its step.
int64_t resume_server(const Job& job, Server& server, int k, const std::string& dir) {
  train::Checkpoint ckpt = train::read_checkpoint_to_resume(dir);
  train::require_compatible(ckpt, job.config);
  const auto pieces = job.plan.pieces_of(k);
  server.load(pieces_from_whole(ckpt.model, pieces), pieces_from_whole(ckpt.optimizer, pieces));
  return ckpt.step;
}

std::vector<float> stats_words(const ServerStats& s) {
  std::vector<float> w = {static_cast<float>(s.applied), static_cast<float>(s.apply_rate())};
  for (auto c : s.staleness_histogram) w.push_back(static_cast<float>(c));
  return w;
}

double validation_loss(const Job& job, const std::map<std::string, torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  for (auto& item : job.model->named_parameters(true)) item.value().copy_(params.at(item.key()));
  return async::validation_loss(*job.model, *job.dataset, job.config.data.global_batch);
}

// Server 0 gathers every shard and the other servers' statistics, evaluates
// the final parameters and writes the summary (p2p only: a lost worker must
// not be needed to finish).
train::TrainResult finish_leader(Job& job, Server& server, Logger& logger, train::RunReporter& reporter, int64_t start,
                                 double seconds) {
  if (static_cast<int>(server.stats().lost_workers.size()) == job.workers)
    throw RuntimeFailure("paratorch: every ps worker was lost (see the messages above); the job has no result");
  std::map<std::string, torch::Tensor> params;
  for (auto& [name, t] : job.full) params[name] = t.clone();
  std::vector<std::vector<float>> stats = {stats_words(server.stats())};
  auto place = [&](int k, const torch::Tensor& flat) {
    int64_t offset = 0;
    for (const auto& piece : job.plan.pieces_of(k)) {
      auto view = piece_view(params[piece.name], piece);
      view.copy_(flat.narrow(0, offset, piece.numel).view(view.sizes()));
      offset += piece.numel;
    }
  };
  {
    std::vector<torch::Tensor> mine;
    for (const auto& piece : job.plan.pieces_of(0)) mine.push_back(server.shard().at(piece.key).reshape({-1}));
    if (!mine.empty()) place(0, torch::cat(mine));
  }
  for (int k = 1; k < job.servers; ++k) {
    auto buf = torch::empty({kStatsWords + job.plan.numel_of(k)}, torch::kFloat);
    job.world.comm()->recv(buf, k, kShardTag);
    auto head = buf.narrow(0, 0, kStatsWords);
    stats.emplace_back(head.data_ptr<float>(), head.data_ptr<float>() + kStatsWords);
    place(k, buf.narrow(0, kStatsWords, job.plan.numel_of(k)));
  }
  std::vector<int> traced;
  for (int r = 1; r < job.servers; ++r) traced.push_back(r);
  for (int w = 0; w < job.workers; ++w)
    if (!server.reports()[static_cast<size_t>(w)].empty()) traced.push_back(job.servers + w);
  write_ps_trace(*job.world.comm(), traced, job.config.comm.timeout_s, job.out("trace.json"));
  const double val = validation_loss(job, params);
  logger.flush();
  report::StepMetrics m = reporter.line(job.config.train.steps, val, job.schedule.at(job.config.train.steps - 1),
                                        seconds * 1000 / static_cast<double>(job.config.train.steps - start));
  m.extra["val_loss"] = val;
  for (int b = 0; b < kStalenessBuckets; ++b) {
    double count = 0;
    for (const auto& s : stats) count += s[static_cast<size_t>(2 + b)];
    if (count > 0) m.extra["staleness_" + std::to_string(b)] = count;  // last bucket: >= kStalenessBuckets-1
  }
  for (int k = 0; k < job.servers; ++k) m.extra["server" + std::to_string(k) + "_apply_per_s"] = stats[static_cast<size_t>(k)][1];
  int lost = 0;
  const auto& reports = server.reports();
  for (int w = 0; w < job.workers; ++w) {
    const int rank = job.servers + w;
    const auto& r = reports[static_cast<size_t>(w)];
    if (r.empty()) {
      ++lost;
      std::printf("paratorch ps: worker rank %d was lost and did not finish its steps\n", rank);
      continue;
    }
    const double steps_per_s = r[1] > 0 ? r[0] / r[1] : 0;
    m.extra["worker" + std::to_string(rank) + "_steps_per_s"] = steps_per_s;
    std::printf("paratorch ps: worker rank %d: %.0f steps, %.2f steps/s, last loss %.4f\n", rank, r[0], steps_per_s, r[2]);
  }
  m.extra["lost_workers"] = lost;
  reporter.write_final(m);
  if (lost > 0)
    std::printf("paratorch ps: lost %d of %d workers; the job finished with the survivors\n", lost, job.workers);
  reporter.finish(" (ps)");
  std::printf("paratorch ps: %d server(s) applied %lld updates; validation loss %.4f\n", job.servers,
              static_cast<long long>(server.stats().applied), val);
  return train::run_result(job.config, *job.dataset, val, m.step_ms);
}

train::TrainResult run_server(Job& job, const std::string& resume_dir) {
  const int k = job.world.rank();
  ServerOptions options;
  options.workers = job.workers;
  options.staleness = job.config.parallel.staleness;
  options.timeout_s = job.config.comm.timeout_s;
  options.timeout_option = "[comm] timeout_s";
  options.make_optimizer = config_optimizer(job.config.optim, job.schedule);
  options.steps = job.config.train.steps;
  options.assign_slots = k == 0 && options.staleness < 0;
  options.local_worker_pids.assign(job.local_pids.begin() + job.servers, job.local_pids.end());
  Server server(job.world.comm(), job.plan, k, job.full, options);
  int64_t start = resume_dir.empty() ? 0 : resume_server(job, server, k, resume_dir);
  auto first = torch::tensor({start}, torch::kLong);
  job.world.comm()->all_reduce(first, ReduceOp::kMin);  // every rank starts at the oldest server's step
  start = first.item<int64_t>();
  server.start_at(start);
  std::unique_ptr<train::RunReporter> reporter;
  std::unique_ptr<Logger> logger;
  if (k == 0) {
    reporter = std::make_unique<train::RunReporter>(job.config, *job.dataset, start);  // a resume trims metrics.jsonl
    LoggerOptions lo;
    lo.workers = job.workers;
    lo.cadence = train::RunCadence(job.config.train);
    lo.first_step = start;
    lo.schedule = job.schedule;
    logger = std::make_unique<Logger>(server, *reporter, lo);
    std::printf("paratorch train: %s; ps mode: %d server(s), %d worker(s), staleness %d; shard sizes", job.dataset->describe().c_str(),
                job.servers, job.workers, job.config.parallel.staleness);
    for (int s = 0; s < job.servers; ++s) std::printf(" %lld", static_cast<long long>(job.plan.numel_of(s)));
    std::printf(" floats; steps %lld..%d -> %s\n", static_cast<long long>(start), job.config.train.steps,
                job.config.train.out_dir.c_str());
    std::fflush(stdout);
  }
  const train::RunCadence cadence(job.config.train);
  int64_t saved = start;
  const Injection inj = read_injection();
  server.on_push = [&](int64_t, int64_t step, double validation) {
    if (inj.crash_rank == k && server.stats().pushes == inj.crash_step) {
      std::fprintf(stderr, "paratorch: PARATORCH_PS_CRASH: server rank %d kills itself (SIGKILL) after %lld pushes\n",
                   k, static_cast<long long>(inj.crash_step));
      std::fflush(stderr);
      std::raise(SIGKILL);
    }
    if (logger) logger->on_push(step, validation);
    if (!train::RunCadence::traces(server.min_clock() - start)) report::Tracer::instance().disable();
    const int64_t done = server.min_clock();
    if (cadence.checkpoints_between(saved, done)) save_server(job, server, k, saved = done);
  };
  const double t0 = now_s();
  server.serve();
  const double seconds = now_s() - t0;
  save_server(job, server, k, job.config.train.steps);
  if (k != 0) {
    auto words = stats_words(server.stats());
    auto stats = torch::tensor(words, torch::kFloat);
    std::vector<torch::Tensor> parts = {stats};
    for (const auto& piece : job.plan.pieces_of(k)) parts.push_back(server.shard().at(piece.key).reshape({-1}));
    job.world.comm()->send(torch::cat(parts), 0, kShardTag);
    send_trace(*job.world.comm(), job.config.comm.timeout_s);
    return {};
  }
  return finish_leader(job, server, *logger, *reporter, start, seconds);
}

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
    double validation = std::numeric_limits<double>::quiet_NaN();  // mid-run validation: ps_logger.h
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

// Every rank's pid, and whether it shares this node (a hash of the host
// name): a server checks a silent local worker's process (ps_server.h).
std::vector<int64_t> local_pids(World& world) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  const auto mine = static_cast<int64_t>(std::hash<std::string>{}(host) & 0x7fffffffffffLL);
  auto all = torch::empty({2 * world.size()}, torch::kLong);
  world.comm()->all_gather(all, torch::tensor({static_cast<int64_t>(getpid()), mine}, torch::kLong));
  std::vector<int64_t> pids;
  for (int r = 0; r < world.size(); ++r)
    pids.push_back(all[2 * r + 1].item<int64_t>() == mine ? all[2 * r].item<int64_t>() : -1);
  return pids;
}

}  // namespace

train::TrainResult run_parameter_server(World& world, const train::Config& config, const std::string& resume_dir) {
  check_async_layout(config, world.size());
  Job job(world, config);
  job.local_pids = local_pids(world);
  report::Tracer::instance().clear();  // this run's spans only
  report::Tracer::instance().enable(world.rank());
  if (world.rank() < job.servers) return run_server(job, resume_dir);
  try {
    return run_worker(job);
  } catch (...) {
    // Tell the servers at once rather than leave them to find us silent.
    leave_servers(*world.comm(), job.servers);
    throw;
  }
}

}  // namespace paratorch::async
