// src/train/ps_logger.cpp — see ps_logger.h.
#include "train/ps_logger.h"

#include "parallel/async/ps_protocol.h"

#include <cmath>
#include <cstdio>
#include <utility>

namespace paratorch::async {

Logger::Logger(const Server& server, train::RunReporter& reporter, LoggerOptions options)
    : server_(server), reporter_(reporter), options_(std::move(options)), logged_step_(options_.first_step),
      last_s_(now_s()) {}

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
  if (!options_.cadence.logs(global)) return;
  double loss = 0;
  int n = 0;
  for (double l : server_.worker_losses())
    if (std::isfinite(l)) loss += l, ++n;
  const double now = now_s(), span = now - last_s_;
  report::StepMetrics m = reporter_.line(global, n ? loss / n : 0, options_.schedule.at(global - 1),
                                         span * 1000 / static_cast<double>(global - logged_step_));
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
    reporter_.add_validation(validation_.begin()->first, validation_.begin()->second);
    validation_.erase(validation_.begin());
  }
  if (options_.cadence.validates_mid_run(global) && !m.extra.count("val_loss"))
    held_ = m;
  else write(m);
}

void Logger::flush() {
  if (held_) write(*std::exchange(held_, std::nullopt));
}

void Logger::write(report::StepMetrics m) {
  reporter_.write(m);
  std::string val;
  auto it = m.extra.find("val_loss");
  if (it != m.extra.end() && !m.extra.count("val_loss_step")) val = " val_loss " + std::to_string(it->second);
  std::printf("step %lld loss %.4f %.1f %s%s\n", static_cast<long long>(m.step), m.loss, m.throughput,
              m.throughput_unit.c_str(), val.c_str());
  std::fflush(stdout);
}

}  // namespace paratorch::async
