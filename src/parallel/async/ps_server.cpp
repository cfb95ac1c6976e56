// src/parallel/async/ps_server.cpp — see ps_server.h.
#include "parallel/async/ps_server.h"

#include "parallel/async/ps_protocol.h"
#include "report/trace.h"
#include <paratorch/errors.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>

namespace paratorch::async {

namespace {

// The project's own optimizer (optim/optimizer.h): state by parameter name,
// so server checkpoints resume in any layout.
class ConfigOptimizer : public ShardOptimizer {
 public:
  ConfigOptimizer(const optim::OptimizerOptions& optim, optim::LrSchedule schedule, const optim::NamedTensors& shard)
      : optimizer_(optim::make_optimizer(optim, shard)), schedule_(schedule) {}
  void step(int64_t step) override { optimizer_->step(schedule_.at(step)); }
  int64_t steps_taken() const override { return optimizer_->steps_taken(); }
  std::map<std::string, torch::Tensor> state_tensors() const override { return optimizer_->state_tensors(); }
  void load_state_tensors(const std::map<std::string, torch::Tensor>& state) override {
    optimizer_->load_state_tensors(state);
  }

 private:
  std::unique_ptr<optim::Optimizer> optimizer_;
  optim::LrSchedule schedule_;
};

}  // namespace

ShardOptimizerFactory config_optimizer(optim::OptimizerOptions optim, optim::LrSchedule schedule) {
  return [optim, schedule](const optim::NamedTensors& shard, const std::vector<Piece>&) {
    return std::unique_ptr<ShardOptimizer>(new ConfigOptimizer(optim, schedule, shard));
  };
}

double ServerStats::apply_rate() const {
  const double span = last_apply_s - first_apply_s;
  return span > 0 && applied > 1 ? static_cast<double>(applied - 1) / span : 0;
}

Server::Server(std::shared_ptr<Communicator> world, const ShardPlan& plan, int index,
               const std::map<std::string, torch::Tensor>& full, ServerOptions options)
    : world_(std::move(world)), index_(index), first_worker_(plan.servers), options_(std::move(options)), pieces_(plan.pieces_of(index)) {
  optim::NamedTensors named;
  for (const auto& piece : pieces_) {
    auto value = piece_view(full.at(piece.name), piece).detach().clone().to(torch::kFloat).contiguous();
    value.requires_grad_(true);
    values_.push_back(value);
    named.emplace_back(piece.key, value);
    numel_ += piece.numel;
  }
  bind_values(torch::empty({numel_}, torch::kFloat));
  if (options_.make_optimizer) optimizer_ = options_.make_optimizer(named, pieces_);
  const auto w = static_cast<size_t>(options_.workers);
  clock_.assign(w, 0);
  done_.assign(w, false);
  lost_.assign(w, false);
  last_heard_s_.assign(w, now_s());
  losses_.assign(w, std::numeric_limits<double>::quiet_NaN());
  reports_.assign(w, {});
  inbox_ = Inbox(w);
  outbox_.assign(w, {});
  round_sum_ = torch::zeros({numel_}, torch::kFloat);
}

int Server::live_workers() const {
  int n = 0;
  for (size_t w = 0; w < lost_.size(); ++w) n += lost_[w] ? 0 : 1;
  return n;
}

// Points every piece at its range of `flat`, carrying the values over.
void Server::bind_values(torch::Tensor flat) {
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (auto& v : values_) {
    auto view = flat.narrow(0, offset, v.numel()).view(v.sizes());
    view.copy_(v);
    v.set_data(view);  // the same leaf (the optimizer's), new memory
    offset += v.numel();
  }
  flat_ = std::move(flat);
}

// A reply sends flat_ itself, not a snapshot: in asynchronous mode every
// pull finds a new version, and the copy per reply cost as much as the
// transfer. Before the values change, replies still in flight keep the old
// buffer (their send holds it) and the shard moves to a copy; usually they
// are done (the worker waits for its reply) and nothing is copied.
void Server::own_values() {
  auto sent = [](const WorkHandle& w) {
    try {
      return w->is_completed();
    } catch (const std::exception&) {
      return false;  // a dead worker's reply: MPI may still hold the buffer
    }
  };
  readers_.erase(std::remove_if(readers_.begin(), readers_.end(), sent), readers_.end());
  if (readers_.empty()) return;
  bind_values(torch::empty({numel_}, torch::kFloat));
  readers_.clear();
}

std::map<std::string, torch::Tensor> Server::shard() const {
  std::map<std::string, torch::Tensor> out;
  for (size_t i = 0; i < pieces_.size(); ++i) out[pieces_[i].key] = values_[i].detach();
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> Server::named_values() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (size_t i = 0; i < pieces_.size(); ++i) out.emplace_back(pieces_[i].key, values_[i]);
  return out;
}

void Server::load(const std::map<std::string, torch::Tensor>& values, const std::map<std::string, torch::Tensor>& state) {
  torch::NoGradGuard no_grad;
  own_values();
  for (size_t i = 0; i < pieces_.size(); ++i) {
    auto it = values.find(pieces_[i].key);
    if (it == values.end() || it->second.sizes() != values_[i].sizes())
      throw RuntimeFailure("paratorch: server checkpoint lacks a tensor '" + pieces_[i].key + "' of shape " +
                           c10::str(values_[i].sizes()) + " (is the checkpoint complete?)");
    values_[i].copy_(it->second);
  }
  if (optimizer_) {
    optimizer_->load_state_tensors(state);
    version_ = optimizer_->steps_taken();
  }
}

void Server::set_values(const std::map<std::string, torch::Tensor>& full) {
  torch::NoGradGuard no_grad;
  own_values();
  for (size_t i = 0; i < pieces_.size(); ++i) values_[i].copy_(piece_view(full.at(pieces_[i].name), pieces_[i]));
  ++version_;  // a new version: every worker's copy is out of date
}

bool Server::finished() const {
  for (size_t w = 0; w < done_.size(); ++w)
    if (!done_[w] && !lost_[w]) return false;
  return true;
}

void Server::serve() {
  serve_until([] { return false; });
}

bool Server::serve_until(const std::function<bool()>& enough) {
  while (!finished() && !enough()) {
    listen();
    check_silence();
  }
  return finished();
}

// Replies complete as workers receive them; MPI progresses them while this
// server probes and receives.
void Server::drain_outbox() {
  for (auto& works : outbox_)
    works.erase(std::remove_if(works.begin(), works.end(), [](const WorkHandle& w) { return w->is_completed(); }),
                works.end());
}

// The round is complete when every worker pushed `step` (its update is then
// applied or, with defer_apply, left in .grad). Pulls are not counted: a
// worker that pushed may already ask for step + 1, and that pull belongs to
// the next round (it is held until this round's update exists).
void Server::serve_round(int64_t step) {
  const double deadline = now_s() + options_.timeout_s;
  while (min_clock() <= step) {
    listen();
    if (now_s() > deadline)
      throw RuntimeFailure("paratorch: ps server " + std::to_string(index_) + " waited more than " +
                           std::to_string(options_.timeout_s) + " s (" + options_.timeout_option + ") for step " +
                           std::to_string(step + 1) + "'s pulls and pushes");
  }
  if (options_.defer_apply) own_values();  // the caller's optimizer steps the values next
}

// Hears one request (or none within 0.25 s), then handles every request
// whose gradient is here: a worker's stuck gradient holds up no one else.
void Server::listen() {
  const int src = wait_for_request(*world_, 0.25, [&] { return inbox_.any_ready(); });
  if (src >= 0) {
    const int worker = src - first_worker_;
    if (worker < 0)
      throw RuntimeFailure("paratorch: ps server " + std::to_string(index_) + " got a request from rank " +
                           std::to_string(src) + ", which is a server, not a worker");
    inbox_.accept(*world_, src, static_cast<size_t>(worker));
    last_heard_s_[static_cast<size_t>(worker)] = now_s();
  }
  for (size_t w = 0; w < lost_.size(); ++w)
    while (auto request = inbox_.take_ready(w)) handle(static_cast<int>(w), *request);
  drain_outbox();
}

void Server::handle(int worker, const Inbox::Request& request) {
  const Header& h = request.header;
  const auto w = static_cast<size_t>(worker);
  if (h.session != options_.session) return;  // another (finished) server's message
  if (lost_[w]) return;  // declared lost: its late messages are ignored
  if (request.failed) return lose_worker(w, "its gradient never followed the header it sent");
  const torch::Tensor& payload = request.payload;
  switch (h.type) {
    case MessageType::kPull: handle_pull(worker, h.step, h.version); break;
    case MessageType::kPush: handle_push(worker, h, payload); break;
    case MessageType::kDone: done_[w] = true; answer_ready_pulls(); break;
    case MessageType::kReport: reports_[w] = {static_cast<double>(h.step), h.value, h.value2}; break;
    case MessageType::kLeave: lose_worker(w, "it failed and left"); break;
    default:
      throw RuntimeFailure("paratorch: ps server " + std::to_string(index_) + " got an unknown message type " +
                           std::to_string(static_cast<int64_t>(h.type)) + " from rank " +
                           std::to_string(worker + first_worker_));
  }
}

void Server::start_at(int64_t step) {
  clock_.assign(clock_.size(), step);
  next_slot_ = step * options_.workers;
}

int64_t Server::min_clock() const {
  int64_t slowest = std::numeric_limits<int64_t>::max();
  for (size_t w = 0; w < clock_.size(); ++w)
    if (!lost_[w]) slowest = std::min(slowest, clock_[w]);
  return slowest == std::numeric_limits<int64_t>::max() ? 0 : slowest;
}

// max() when every worker is done or lost.
int64_t Server::slowest_unfinished_clock() const {
  int64_t slowest = std::numeric_limits<int64_t>::max();
  for (size_t w = 0; w < clock_.size(); ++w)
    if (!lost_[w] && !done_[w]) slowest = std::min(slowest, clock_[w]);
  return slowest;
}

bool Server::pull_allowed(int64_t step) const {
  if (options_.staleness < 0) return true;
  const int64_t slowest = slowest_unfinished_clock();
  return slowest == std::numeric_limits<int64_t>::max() || step - slowest <= options_.staleness;
}

void Server::handle_pull(int worker, int64_t step, int64_t version) {
  if (pull_allowed(step)) return reply(worker, step, version);
  pending_.push_back({worker, step, version});
}

void Server::answer_ready_pulls() {
  std::vector<PendingPull> still;
  for (const auto& p : pending_) {
    if (lost_[static_cast<size_t>(p.worker)]) continue;
    if (pull_allowed(p.step)) reply(p.worker, p.step, p.version);
    else still.push_back(p);
  }
  pending_ = std::move(still);
}

// Only a shard that changed since the worker's copy travels.
void Server::reply(int worker, int64_t step, int64_t version) {
  report::Tracer::Span span("ps_reply", "comm");
  const int64_t slowest = slowest_unfinished_clock();
  if (slowest != std::numeric_limits<int64_t>::max()) stats_.max_lead = std::max(stats_.max_lead, step - slowest);
  Header h;
  h.session = options_.session;
  h.version = version_;
  if (options_.assign_slots) h.step = next_slot_ < options_.steps * options_.workers ? next_slot_++ : -1;
  torch::Tensor payload;
  if (version != version_ && numel_ > 0) payload = flat_;  // own_values() guards it until sent
  auto works = post_message(*world_, worker + first_worker_, h, payload, /*reply=*/true);
  if (payload.defined()) readers_.push_back(works.back());
  for (auto& work : works) outbox_[static_cast<size_t>(worker)].push_back(std::move(work));
}

void Server::handle_push(int worker, const Header& h, const torch::Tensor& grad) {
  const int64_t step = h.step, version = h.version;
  if (grad.numel() != numel_)
    throw RuntimeFailure("paratorch: ps server " + std::to_string(index_) + " expected " + std::to_string(numel_) +
                         " gradient values from worker " + std::to_string(worker) + ", got " +
                         std::to_string(grad.numel()));
  const auto w = static_cast<size_t>(worker);
  clock_[w] = step + 1;
  losses_[w] = h.value;
  ++stats_.pushes;
  const int64_t stale = options_.staleness == 0 ? 0 : version_ - version;
  ++stats_.staleness_histogram[static_cast<size_t>(std::clamp<int64_t>(stale, 0, kStalenessBuckets - 1))];
  if (options_.staleness == 0) {
    // Bulk-synchronous: one update from the mean of the live workers' pushes.
    if (numel_ > 0) round_sum_.add_(grad);
    if (++round_count_ == live_workers()) {
      if (options_.defer_apply) set_gradients(round_sum_ / static_cast<double>(round_count_)), ++version_;
      else apply(round_sum_ / static_cast<double>(round_count_), step);
      round_sum_.zero_();
      round_count_ = 0;
    }
  } else {
    apply(grad, step);
  }
  if (on_push) on_push(worker, step, h.value2);
  answer_ready_pulls();
}

void Server::set_gradients(const torch::Tensor& flat_grad) {
  int64_t offset = 0;
  for (auto& v : values_) {
    v.mutable_grad() = flat_grad.narrow(0, offset, v.numel()).view(v.sizes()).contiguous();
    offset += v.numel();
  }
}

void Server::apply(const torch::Tensor& flat_grad, int64_t step) {
  report::Tracer::Span span("ps_apply", "compute");
  own_values();
  set_gradients(flat_grad);
  if (!optimizer_)
    throw RuntimeFailure("paratorch: ps server " + std::to_string(index_) +
                         " has no optimizer to apply a gradient with (ServerOptions::make_optimizer is empty)");
  optimizer_->step(step);
  ++version_;
  ++stats_.applied;
  stats_.last_apply_s = now_s();
  if (stats_.applied == 1) stats_.first_apply_s = stats_.last_apply_s;
}

namespace {

// True when `pid` runs on this node and is gone (or a zombie): a crashed
// worker, found without waiting out the timeout.
bool local_process_gone(int64_t pid) {
  if (pid <= 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  const auto paren = line.rfind(')');
  const char state = paren != std::string::npos && paren + 2 < line.size() ? line[paren + 2] : '?';
  return state == 'Z' || state == 'X';
}

}  // namespace

// A worker that owes us a message (not done, no pull waiting here) and has
// been silent past the timeout — or past a second while its process is
// gone — is lost.
void Server::check_silence() {
  const double now = now_s();
  for (size_t w = 0; w < clock_.size(); ++w) {
    if (done_[w] || lost_[w]) continue;
    if (inbox_.waiting_s(w, now) > options_.timeout_s) {
      lose_worker(w, "its gradient never followed the header it sent");
      continue;
    }
    const double silent = now - last_heard_s_[w];
    const int64_t pid = w < options_.local_worker_pids.size() ? options_.local_worker_pids[w] : -1;
    const bool gone = silent > std::min(1.0, options_.timeout_s) && local_process_gone(pid);
    if (!gone && silent <= options_.timeout_s) continue;
    bool waiting = false;
    for (const auto& p : pending_) waiting = waiting || p.worker == static_cast<int>(w);
    if (waiting && !gone) continue;
    char why[128];
    std::snprintf(why, sizeof why, gone ? "its process is gone (silent %.1f s)" : "silent for %.1f s", silent);
    lose_worker(w, why);
  }
}

void Server::lose_worker(size_t w, const std::string& why) {
  const int rank = static_cast<int>(w) + first_worker_;
  if (options_.staleness == 0)
    throw RuntimeFailure("paratorch: ps worker rank " + std::to_string(rank) + " was lost (" + why +
                         ", " + options_.timeout_option + " = " + std::to_string(options_.timeout_s) +
                         "); bulk-synchronous training (staleness = 0) cannot continue without it");
  lost_[w] = true;
  stats_.lost_workers.push_back(rank);
  // Replies it never received complete never; their buffers stay alive for MPI.
  for (auto& work : outbox_[w]) abandoned_.push_back(std::move(work));
  outbox_[w].clear();
  inbox_.drop(w);
  std::fprintf(stderr, "paratorch: ps server %d: worker rank %d lost (%s) after step %lld; continuing with %d workers\n",
               index_, rank, why.c_str(), static_cast<long long>(clock_[w]), live_workers());
  answer_ready_pulls();
}

}  // namespace paratorch::async
