// src/train/ps_server_runner.cpp — see ps_server_runner.h.
#include "train/ps_server_runner.h"

#include "parallel/async/ps_protocol.h"
#include "parallel/async/ps_trace.h"
#include "parallel/async/validation.h"
#include "train/checkpoint.h"
#include "train/run_reporter.h"
#include <paratorch/errors.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <limits>

namespace paratorch::async {
namespace {

constexpr int kShardTag = 7104;
constexpr int64_t kStatsWords = 2 + kStalenessBuckets;
constexpr double kNone = std::numeric_limits<double>::quiet_NaN();

std::vector<float> stats_words(const ServerStats& s) {
  std::vector<float> w = {static_cast<float>(s.applied), static_cast<float>(s.apply_rate())};
  for (auto c : s.staleness_histogram) w.push_back(static_cast<float>(c));
  return w;
}

// The mean of the live workers' latest losses (a lost worker's stays at
// what it last pushed).
double live_mean_loss(const Server& server, int first_worker) {
  const auto& lost = server.stats().lost_workers;
  double sum = 0;
  int n = 0;
  for (size_t w = 0; w < server.worker_losses().size(); ++w) {
    const double loss = server.worker_losses()[w];
    const bool gone = std::find(lost.begin(), lost.end(), first_worker + static_cast<int>(w)) != lost.end();
    if (std::isfinite(loss) && !gone) sum += loss, ++n;
  }
  return n ? sum / n : 0;
}

}  // namespace

PsServerRunner::PsServerRunner(Job& job) : job_(job), index_(job.world.rank()), injection_(read_injection()) {}

// Restores this server's rows from a checkpoint of any layout (the servers'
// own pieces join into whole tensors, so another server count resumes too);
// every rank starts at the oldest server's step.
int64_t PsServerRunner::begin(const std::string& resume_dir) {
  ServerOptions options;
  options.workers = job_.workers;
  options.staleness = job_.config.parallel.staleness;
  options.timeout_s = job_.config.comm.timeout_s;
  options.timeout_option = "[comm] timeout_s";
  options.make_optimizer = config_optimizer(job_.config.optim, job_.schedule);
  options.steps = job_.config.train.steps;
  options.assign_slots = index_ == 0 && options.staleness < 0;
  options.local_worker_pids.assign(job_.local_pids.begin() + job_.servers, job_.local_pids.end());
  server_ = std::make_unique<Server>(job_.world.comm(), job_.plan, index_, job_.full, options);
  int64_t start = 0;
  if (!resume_dir.empty()) {
    checkpoints::Checkpoint ckpt = train::read_checkpoint_to_resume(resume_dir);
    train::require_compatible(ckpt, job_.config);
    const auto pieces = job_.plan.pieces_of(index_);
    server_->load(pieces_from_whole(ckpt.model, pieces), pieces_from_whole(ckpt.optimizer, pieces));
    start = ckpt.step;
  }
  auto first = torch::tensor({start}, torch::kLong);
  job_.world.comm()->all_reduce(first, ReduceOp::kMin);  // the workers take part too
  start_ = taken_ = first.item<int64_t>();
  server_->start_at(start_);
  server_->on_push = [this](int64_t, int64_t step, double validation) {
    if (injection_.crash_rank == index_ && server_->stats().pushes == injection_.crash_step) {
      std::fprintf(stderr, "paratorch: PARATORCH_PS_CRASH: server rank %d kills itself (SIGKILL) after %lld pushes\n",
                   index_, static_cast<long long>(injection_.crash_step));
      std::fflush(stderr);
      std::raise(SIGKILL);
    }
    if (std::isfinite(validation)) validations_[step] = validation;
  };
  return start_;
}

void PsServerRunner::announce(int64_t first_step) {
  std::printf("paratorch train: %s; ps mode: %d server(s), %d worker(s), staleness %d; shard sizes",
              job_.dataset->describe().c_str(), job_.servers, job_.workers, job_.config.parallel.staleness);
  for (int s = 0; s < job_.servers; ++s) std::printf(" %lld", static_cast<long long>(job_.plan.numel_of(s)));
  std::printf(" floats; steps %lld..%d -> %s\n", static_cast<long long>(first_step), job_.config.train.steps,
              job_.config.train.out_dir.c_str());
  std::fflush(stdout);
}

int64_t PsServerRunner::steps_done() const {
  if (job_.config.parallel.staleness > 0) return server_->min_clock();
  return start_ + server_->stats().pushes / job_.workers;
}

train::StepOutcome PsServerRunner::step(int64_t s) {
  taken_ = s + 1;
  train::StepOutcome o;
  if (taken_ < job_.config.train.steps) {
    server_->serve_until([&] { return steps_done() >= taken_; });
  } else {
    server_->serve();  // until every worker is done or lost
    join_final_rows();
  }
  o.loss = live_mean_loss(*server_, job_.servers);
  o.lr = job_.schedule.at(s);
  o.counters["applied_updates"] = static_cast<double>(server_->stats().applied);
  if (taken_ == job_.config.train.steps && index_ == 0) add_final_fields(o);
  return o;
}

void PsServerRunner::join_final_rows() {
  if (index_ != 0) {
    std::vector<torch::Tensor> parts = {torch::tensor(stats_words(server_->stats()), torch::kFloat)};
    for (const auto& piece : job_.plan.pieces_of(index_)) parts.push_back(server_->shard().at(piece.key).reshape({-1}));
    job_.world.comm()->send(torch::cat(parts), 0, kShardTag);
    return;
  }
  if (static_cast<int>(server_->stats().lost_workers.size()) == job_.workers)
    throw RuntimeFailure("paratorch: every ps worker was lost (see the messages above); the job has no result");
  for (auto& [name, t] : job_.full) final_params_[name] = t.clone();
  auto place = [&](int k, const torch::Tensor& flat) {
    int64_t offset = 0;
    for (const auto& piece : job_.plan.pieces_of(k)) {
      auto view = piece_view(final_params_[piece.name], piece);
      view.copy_(flat.narrow(0, offset, piece.numel).view(view.sizes()));
      offset += piece.numel;
    }
  };
  std::vector<torch::Tensor> mine;
  for (const auto& piece : job_.plan.pieces_of(0)) mine.push_back(server_->shard().at(piece.key).reshape({-1}));
  if (!mine.empty()) place(0, torch::cat(mine));
  final_stats_ = {stats_words(server_->stats())};
  for (int k = 1; k < job_.servers; ++k) {
    auto buf = torch::empty({kStatsWords + job_.plan.numel_of(k)}, torch::kFloat);
    job_.world.comm()->recv(buf, k, kShardTag);
    auto head = buf.narrow(0, 0, kStatsWords);
    final_stats_.emplace_back(head.data_ptr<float>(), head.data_ptr<float>() + kStatsWords);
    place(k, buf.narrow(0, kStatsWords, job_.plan.numel_of(k)));
  }
}

// The last line's fields: the staleness histogram over every server
// (staleness_K: gradients computed K server updates ago; the last bucket
// holds the rest), each server's apply rate, each worker's pace, and how
// many workers were lost.
void PsServerRunner::add_final_fields(train::StepOutcome& o) const {
  for (int b = 0; b < kStalenessBuckets; ++b) {
    double count = 0;
    for (const auto& s : final_stats_) count += s[static_cast<size_t>(2 + b)];
    if (count > 0) o.counters["staleness_" + std::to_string(b)] = count;
  }
  for (int k = 0; k < job_.servers; ++k)
    o.counters["server" + std::to_string(k) + "_apply_per_s"] = final_stats_[static_cast<size_t>(k)][1];
  int lost = 0;
  const auto& reports = server_->reports();
  for (int w = 0; w < job_.workers; ++w) {
    const auto& r = reports[static_cast<size_t>(w)];
    if (r.empty()) {
      ++lost;
      continue;
    }
    o.counters["worker" + std::to_string(job_.servers + w) + "_steps_per_s"] = r[1] > 0 ? r[0] / r[1] : 0;
  }
  o.counters["lost_workers"] = lost;
}

train::Validation PsServerRunner::validate() {
  if (index_ != 0) return {kNone, -1, false};
  if (taken_ == job_.config.train.steps) {
    torch::NoGradGuard no_grad;
    for (auto& item : job_.model->named_parameters(true)) item.value().copy_(final_params_.at(item.key()));
    return {async::validation_loss(*job_.model, *job_.dataset, job_.config.data.global_batch)};
  }
  // Sent with share 0's push of this step. Once a worker is lost it may
  // never come: then wait no longer than the step itself. (With staleness > 0
  // the step is done only once share 0's worker pushed it or was lost.)
  server_->serve_until([&] {
    return validations_.count(taken_) > 0 || (!server_->stats().lost_workers.empty() && steps_done() > taken_);
  });
  const auto it = validations_.find(taken_);
  if (it == validations_.end()) return {kNone, -1, false};
  return {it->second};
}

void PsServerRunner::checkpoint(int64_t steps_done) {
  checkpoints::Checkpoint ckpt;
  ckpt.step = steps_done;
  ckpt.model = server_->shard();
  ckpt.optimizer = server_->optimizer_state();
  train::save_run_checkpoint(job_.config, std::move(ckpt), job_.layout(),
                             "checkpoints/server-" + std::to_string(index_));
}

void PsServerRunner::write_trace(const std::string& path) {
  if (index_ != 0) return send_trace(*job_.world.comm(), job_.config.comm.timeout_s);
  std::vector<int> traced;
  for (int r = 1; r < job_.servers; ++r) traced.push_back(r);
  const auto& reports = server_->reports();
  for (int w = 0; w < job_.workers; ++w)
    if (!reports[static_cast<size_t>(w)].empty()) traced.push_back(job_.servers + w);
  write_ps_trace(*job_.world.comm(), traced, job_.config.comm.timeout_s, path);
}

// Server 0's closing lines: the workers lost, and each one's pace.
void PsServerRunner::finish() {
  if (index_ != 0) return;
  const auto& reports = server_->reports();
  int lost = 0;
  for (int w = 0; w < job_.workers; ++w) {
    const int rank = job_.servers + w;
    const auto& r = reports[static_cast<size_t>(w)];
    if (r.empty()) {
      ++lost;
      std::printf("paratorch ps: worker rank %d was lost and did not finish its steps\n", rank);
      continue;
    }
    std::printf("paratorch ps: worker rank %d: %.0f steps, %.2f steps/s, last loss %.4f\n", rank, r[0],
                r[1] > 0 ? r[0] / r[1] : 0, r[2]);
  }
  if (lost > 0)
    std::printf("paratorch ps: lost %d of %d workers; the job finished with the survivors\n", lost, job_.workers);
  std::printf("paratorch ps: %d server(s) applied %lld updates\n", job_.servers,
              static_cast<long long>(server_->stats().applied));
  std::fflush(stdout);
}

double PsServerRunner::job_peak_rss_mb() { return train::peak_rss_mb(); }

}  // namespace paratorch::async
