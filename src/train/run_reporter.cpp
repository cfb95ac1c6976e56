// src/train/run_reporter.cpp — see run_reporter.h.
#include "train/run_reporter.h"

#include "checkpoint/sharded_folder.h"

#include <cmath>
#include <filesystem>

namespace paratorch::train {

RunReporter::RunReporter(const Config& config, const data::Dataset& dataset, int64_t first_step)
    : config_(config), dataset_(dataset), unit_(dataset.throughput_unit()) {
  std::filesystem::create_directories(config.train.out_dir);
  if (first_step > 0) history_.resume_from(path("metrics.jsonl"), first_step);
  writer_ = std::make_unique<report::MetricsWriter>(path("metrics.jsonl"), /*append=*/first_step > 0);
}

std::string RunReporter::path(const std::string& file) const { return config_.train.out_dir + "/" + file; }

double RunReporter::throughput(double ms) const { return items_per_second(config_, dataset_, ms); }

report::StepMetrics RunReporter::line(int64_t step, double loss, double lr, double ms) const {
  report::StepMetrics m;
  m.step = step;
  m.loss = loss;
  m.lr = lr;
  m.step_ms = ms;
  m.throughput = throughput(ms);
  m.throughput_unit = unit_;
  return m;
}

void RunReporter::write(const report::StepMetrics& m) {
  writer_->write(m);
  history_.add_train(m.step, m.loss);
  auto val = m.extra.find("val_loss");
  if (val != m.extra.end() && std::isfinite(val->second)) history_.add_validation(m.step, val->second);
}

void RunReporter::finish(const std::string& suffix) const {
  history_.write_loss_svg(config_, dataset_.baseline_loss(), suffix);
}

double items_per_second(const Config& config, const data::Dataset& dataset, double ms) {
  return ms > 0 ? static_cast<double>(config.data.global_batch * dataset.items_per_sample()) / (ms / 1000) : 0;
}

TrainResult run_result(const Config& config, const data::Dataset& dataset, double final_loss, double mean_step_ms) {
  TrainResult r;
  r.steps = config.train.steps;
  r.final_loss = final_loss;
  r.mean_step_ms = mean_step_ms;
  r.throughput = items_per_second(config, dataset, mean_step_ms);
  r.unit = dataset.throughput_unit();
  r.peak_rss_mb = peak_rss_mb();
  return r;
}

std::string save_run_checkpoint(const Config& config, checkpoints::Checkpoint ckpt, const std::string& layout,
                                const std::string& folder) {
  ckpt.config_toml = to_toml(config);
  ckpt.layout = layout;
  return checkpoints::write_whole_checkpoint(config.train.out_dir + "/" + folder, ckpt);
}

}  // namespace paratorch::train
