// src/comm/op_queue.cpp — see op_queue.h.
#include "comm/op_queue.h"

#include "comm/flight_recorder.h"
#include "comm/watchdog.h"
#include "report/trace.h"

#include <algorithm>

namespace paratorch::comm {

void QueuedWork::wait() {
  if (queue_ && !is_completed()) queue_->help_until(*this);
  wait_done();
}

void QueuedWork::wait_done() {
  std::unique_lock<std::mutex> lock(mutex_);
  // No deadline here: the op itself runs under a watchdog ticket, which ends
  // the job if it overruns; an op queued behind it never waits longer.
  done_cv_.wait(lock, [this] { return done_; });
  if (failure_) std::rethrow_exception(failure_);
}

bool QueuedWork::is_completed() {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

void QueuedWork::complete(std::exception_ptr failure) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    failure_ = std::move(failure);
  }
  done_cv_.notify_all();
}

OpQueue::~OpQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<QueuedWork> OpQueue::submit(OpInfo info, std::function<void()> run) {
  auto work = std::make_shared<QueuedWork>(this);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
    const uint64_t flight_id = FlightRecorder::instance().record(info, FlightState::kQueued);
    ops_.push_back(Op{std::move(info), std::move(run), work, flight_id});
  }
  ready_.notify_one();
  return work;
}

void OpQueue::run_now(OpInfo info, std::function<void()> run) {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (busy_ || !ops_.empty()) {
      lock.unlock();
      submit(std::move(info), std::move(run))->wait();  // helps: may run inline after all
      return;
    }
    busy_ = true;
  }
  const uint64_t flight_id = FlightRecorder::instance().record(info, FlightState::kStarted);
  Op op{std::move(info), std::move(run), std::make_shared<QueuedWork>(), flight_id};
  execute(op);
  op.work->wait_done();  // already complete: rethrows a failure
}

void OpQueue::help_until(const QueuedWork& work) {
  for (;;) {
    Op op;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (busy_) return;  // the thread is running an op: perhaps ours
      // Only ops up to our own: one queued after it may wait for a peer that
      // first needs what our caller does next.
      const bool queued = std::any_of(ops_.begin(), ops_.end(), [&](const Op& o) { return o.work.get() == &work; });
      if (!queued) return;  // running or done
      op = std::move(ops_.front());
      ops_.pop_front();
      busy_ = true;
    }
    execute(op);  // ours is the last one: after it, it is no longer queued
  }
}

void OpQueue::execute(Op& op) {
  std::exception_ptr failure;
  try {
    FlightScope flight(op.flight_id);
    Watchdog::Scope deadline(op.info, timeout_s_);
    report::Tracer::Span span(report::Tracer::instance().enabled() ? op.info.op + " " + op.info.group : "", "comm");
    op.run();
  } catch (...) {
    failure = std::current_exception();
  }
  // Complete before the next op may start: ops complete in issue order, so
  // a caller that waited for op k may rely on every op before k being done.
  op.work->complete(failure);
  bool more;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    busy_ = false;
    more = !ops_.empty();
  }
  if (more) ready_.notify_one();  // ops queued behind an inline one may run now
}

void OpQueue::loop() {
  for (;;) {
    Op op;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait(lock, [this] { return (stopping_ && !busy_) || (!ops_.empty() && !busy_); });
      if (ops_.empty()) return;  // stopping and drained
      op = std::move(ops_.front());
      ops_.pop_front();
      busy_ = true;
    }
    execute(op);
  }
}

}  // namespace paratorch::comm
