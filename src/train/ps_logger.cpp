// src/train/ps_logger.cpp — see ps_logger.h.
#include "train/ps_logger.h"

#include "parallel/async/ps_protocol.h"

#include <cmath>
#include <cstdio>
#include <utility>

namespace paratorch::async {

bool validates_at(int64_t step, int log_every, int64_t steps) {
  return step > 0 && step < steps && step % (5 * static_cast<int64_t>(log_every)) == 0;
}

namespace {

// A resumed run's history and metrics.jsonl, as the Trainer's: the lines up
// to its first step, those after it dropped (they are logged again).
train::RunHistory resumed_history(const LoggerOptions& options) {
  train::RunHistory history;
  if (options.append) history.resume_from(options.metrics_path, options.first_step);
  return history;
}

}  // namespace

Logger::Logger(const Server& server, LoggerOptions options)
    : server_(server), options_(std::move(options)), history_(resumed_history(options_)),
      writer_(options_.metrics_path, options_.append),
      logged_step_(options_.first_step), last_s_(now_s()) {}

void Logger::on_push(int64_t step, double validation) {
  if (std::isfinite(validation)) {
    if (held_ && held_->step == step) {
      held_->extra["val_loss"] = validation;
      write(*std::exchange(held_, std::nullopt));
    } else {
      validation_[step] = validation;
    }
  }
  if (++pushes_ % options_.workers != 0) return;
  const int64_t global = options_.first_step + pushes_ / options_.workers;
  if (global % options_.log_every != 0 && global != options_.steps) return;
  double loss = 0;
  int n = 0;
  for (double l : server_.worker_losses())
    if (std::isfinite(l)) loss += l, ++n;
  const double now = now_s(), span = now - last_s_;
  report::StepMetrics m;
  m.step = global;
  m.loss = n ? loss / n : 0;
  m.lr = options_.schedule.at(global - 1);
  m.step_ms = span * 1000 / static_cast<double>(global - logged_step_);
  m.throughput = static_cast<double>((global - logged_step_) * options_.samples_per_step) / span;
  m.throughput_unit = options_.unit;
  m.extra["applied_updates"] = static_cast<double>(server_.stats().applied);
  logged_step_ = global;
  last_s_ = now;
  flush();
  if (auto same = validation_.find(global); same != validation_.end()) {  // came early (asynchronous modes)
    m.extra["val_loss"] = same->second;
    validation_.erase(same);
  } else if (!validation_.empty() && validation_.begin()->first < global) {  // came late
    m.extra["val_loss_step"] = static_cast<double>(validation_.begin()->first);
    m.extra["val_loss"] = validation_.begin()->second;
    history_.add_validation(validation_.begin()->first, validation_.begin()->second);
    validation_.erase(validation_.begin());
  }
  if (validates_at(global, options_.log_every, options_.steps) && !m.extra.count("val_loss")) held_ = m;
  else write(m);
}

void Logger::flush() {
  if (held_) write(*std::exchange(held_, std::nullopt));
}

void Logger::write(report::StepMetrics m) {
  writer_.write(m);
  history_.add_train(m.step, m.loss);
  std::string val;
  auto it = m.extra.find("val_loss");
  if (it != m.extra.end() && !m.extra.count("val_loss_step")) {
    history_.add_validation(m.step, it->second);
    val = " val_loss " + std::to_string(it->second);
  }
  std::printf("step %lld loss %.4f %.1f %s%s\n", static_cast<long long>(m.step), m.loss, m.throughput,
              m.throughput_unit.c_str(), val.c_str());
  std::fflush(stdout);
}

}  // namespace paratorch::async
