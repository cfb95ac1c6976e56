// src/parallel/async/ps_worker.cpp — see ps_worker.h.
#include "parallel/async/ps_worker.h"

#include "parallel/async/ps_protocol.h"
#include "parallel/async/ps_server.h"
#include "report/trace.h"
#include "parallel/grad_clip.h"
#include <paratorch/errors.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

namespace paratorch::async {

Worker::Worker(std::shared_ptr<Communicator> world, const ShardPlan& plan, std::vector<torch::Tensor> params,
               WorkerOptions options)
    : world_(std::move(world)), plan_(plan), options_(options), params_(std::move(params)) {
  versions_.assign(static_cast<size_t>(plan_.servers), -1);
  int64_t total = 0;
  bool fp32 = true;
  std::set<const void*> seen;  // a tensor listed twice (tied weights) keeps its own memory
  for (const auto& p : params_) {
    total += p.numel();
    fp32 = fp32 && p.scalar_type() == torch::kFloat && p.device().is_cpu() && seen.insert(p.unsafeGetTensorImpl()).second;
  }
  int64_t planned = 0;
  for (int s = 0; s < plan_.servers; ++s) {
    flat_offset_.push_back(planned);
    planned += plan_.numel_of(s);
  }
  if (fp32 && planned == total) {
    // Model order = the servers' ranges back to back (shard_plan.h).
    torch::NoGradGuard no_grad;
    flat_ = torch::empty({total}, torch::kFloat);
    int64_t offset = 0;
    for (auto& p : params_) {
      auto view = flat_.narrow(0, offset, p.numel()).view(p.sizes());
      view.copy_(p);
      p.set_data(view);
      offset += p.numel();
    }
  }
}

int64_t Worker::pull(int64_t step) {
  report::Tracer::Span span("ps_pull", "comm");
  for (int s = 0; s < plan_.servers; ++s) {
    Header h;
    h.session = options_.session;
    h.type = MessageType::kPull;
    h.step = step;
    h.version = versions_[static_cast<size_t>(s)];
    send_message(*world_, server_rank(s), h, torch::Tensor(), /*reply=*/false);
  }
  torch::NoGradGuard no_grad;
  int64_t slot = 0;
  for (int s = 0; s < plan_.servers; ++s) {
    torch::Tensor payload, mine;
    if (flat_.defined()) payload = mine = flat_.narrow(0, flat_offset_[static_cast<size_t>(s)], plan_.numel_of(s));
    Header h = receive_reply(*world_, server_rank(s), &payload, patience_s(), "pull", patience_text());
    if (s == 0) slot = h.step;
    versions_[static_cast<size_t>(s)] = h.version;
    if (h.numel == 0) continue;  // unchanged since our copy
    if (mine.defined() && payload.data_ptr() == mine.data_ptr()) continue;  // received into the parameters
    int64_t offset = 0;
    for (const auto& piece : plan_.pieces_of(s)) {
      auto view = piece_view(params_[piece.param], piece);
      view.copy_(payload.narrow(0, offset, piece.numel).view(view.sizes()));
      offset += piece.numel;
    }
  }
  return slot;
}

double compute_and_push(Worker& worker, models::BundledModel& model, const models::Batch& batch, int64_t step,
                        double validation) {
  const double t0 = now_s();
  const auto& options = worker.options();
  for (auto p : worker.params())
    p.mutable_grad() = torch::Tensor();  // backward writes fresh gradients: no zeroing pass, no accumulation
  double loss = 0;
  {
    report::Tracer::Span span("forward_backward", "compute");
    auto l = model.loss(batch);
    l.backward();
    loss = l.item<double>();
  }
  if (options.grad_clip > 0) parallel::clip_grad_norm(worker.params(), options.grad_clip);
  if (options.delay_factor > 1) {
    // The documented straggler injection (bench/async): this worker computes
    // `delay_factor` times slower.
    const double spent = now_s() - t0;
    std::this_thread::sleep_for(std::chrono::duration<double>(spent * (options.delay_factor - 1)));
  }
  worker.push(step, loss, validation);
  return loss;
}

void Worker::push(int64_t step, double loss, double validation) {
  report::Tracer::Span span("ps_push", "comm");
  std::vector<std::pair<int, WorkHandle>> sends;
  for (int s = 0; s < plan_.servers; ++s) {
    std::vector<torch::Tensor> flat;
    for (const auto& piece : plan_.pieces_of(s)) {
      const auto& p = params_[piece.param];
      auto g = p.grad().defined() ? p.grad() : torch::zeros_like(p);
      flat.push_back(piece_view(g, piece).reshape({-1}).to(torch::kFloat));
    }
    Header h;
    h.session = options_.session;
    h.type = MessageType::kPush;
    h.step = step;
    h.version = versions_[static_cast<size_t>(s)];
    h.value = loss;
    h.value2 = validation;
    for (auto& w : post_message(*world_, server_rank(s), h, flat.empty() ? torch::Tensor() : torch::cat(flat), false))
      sends.emplace_back(s, std::move(w));
  }
  // Every server's push in flight at once; a server that never takes its
  // push is named (it died or is stuck), within the pull's deadline.
  const double deadline = now_s() + patience_s();
  for (auto& [s, work] : sends)
    while (!work->is_completed()) {
      if (now_s() > deadline)
        throw RuntimeFailure("paratorch: ps worker rank " + std::to_string(world_->rank()) +
                             " could not push its gradient to server rank " + std::to_string(server_rank(s)) +
                             " within " + std::to_string(patience_s()) + " s (" + patience_text() +
                             "); the server is gone or stuck");
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
}

// A live server holds a pull at most until the worker it waits for (the
// staleness bound) is heard from or declared lost, timeout_s; it never stops
// listening for one worker's gradient (ps_inbox.h). Twice that leaves it time
// to answer.
double Worker::patience_s() const { return 2 * options_.timeout_s; }

std::string Worker::patience_text() const { return "2 x " + options_.timeout_option; }

void Worker::done() {
  for (int s = 0; s < plan_.servers; ++s) {
    Header h;
    h.session = options_.session;
    h.type = MessageType::kDone;
    send_message(*world_, server_rank(s), h, torch::Tensor(), false);
  }
}

void Worker::report(int64_t steps, double seconds, double loss) {
  Header h;
  h.session = options_.session;
  h.type = MessageType::kReport;
  h.step = steps;
  h.value = seconds;
  h.value2 = loss;
  send_message(*world_, server_rank(0), h, torch::Tensor(), false);
}

void leave_servers(Communicator& world, int servers) {
  std::vector<WorkHandle> works;
  for (int s = 0; s < servers; ++s) {
    Header h;
    h.type = MessageType::kLeave;
    for (auto& w : post_message(world, s, h, torch::Tensor(), false)) works.push_back(std::move(w));
  }
  const double deadline = now_s() + 1.0;
  for (auto& w : works)
    while (!w->is_completed() && now_s() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

}  // namespace paratorch::async
