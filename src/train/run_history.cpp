// src/train/run_history.cpp — see run_history.h.
#include "train/run_history.h"

#include "formats/atomic_file.h"
#include "models/registry.h"
#include "report/svg_plot.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

namespace paratorch::train {

void RunHistory::resume_from(const std::string& path, int64_t last_step) {
  if (!std::filesystem::exists(path)) return;
  std::istringstream in(formats::read_file_bytes(path));
  std::string line, kept;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j["step"].is_number_integer()) continue;  // a torn last line
    const int64_t step = j["step"].get<int64_t>();
    if (step > last_step) continue;
    kept += line + "\n";
    if (j["loss"].is_number()) add_train(step, j["loss"].get<double>());
    if (j.contains("val_loss") && j["val_loss"].is_number()) add_validation(step, j["val_loss"].get<double>());
  }
  formats::write_file_atomic(path, kept);
}

std::string RunHistory::loss_svg(const std::string& title, const std::string& loss_name, double baseline) const {
  report::LineChart chart;
  chart.title = title;
  chart.x_label = "step";
  chart.y_label = loss_name;
  // In step order: Hogwild's threads and a parameter server's late
  // validations log steps out of order.
  auto train = train_, validation = validation_;
  std::stable_sort(train.begin(), train.end());
  std::stable_sort(validation.begin(), validation.end());
  chart.series.push_back({"training", "#1f77b4", train});
  if (!validation.empty()) chart.series.push_back({"validation", "#d62728", validation});
  if (baseline > 0 && !train.empty())
    chart.series.push_back({"unigram baseline", "#7f7f7f",
                            {{train.front().first, baseline}, {train.back().first, baseline}}});
  return chart.to_svg();
}

void RunHistory::write_loss_svg(const Config& config, double baseline, const std::string& suffix) const {
  const std::string& loss_name = models::model_family(config.model.name).loss_name;
  report::write_text_file(config.train.out_dir + "/loss.svg",
                          loss_svg(config.model.name + " on " + config.data.source + suffix, loss_name, baseline));
}

void add_validation_fields(report::StepMetrics& m, const std::string& model, double loss, double accuracy) {
  m.extra["val_loss"] = loss;
  const models::ModelFamily& family = models::model_family(model);
  const double metric = family.metric(loss, accuracy);
  if (!std::isnan(metric)) m.extra[family.metric_key] = metric;
}

}  // namespace paratorch::train
