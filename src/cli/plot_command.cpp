// src/cli/plot_command.cpp — `paratorch plot`: several runs' curves in one
// chart, read from their metrics.jsonl (e.g. one layout or compressor per run).
//
//   paratorch plot --out F.svg --run DIR[=LABEL] --run DIR[=LABEL] ... [--key K] [--title T]
#include "cli/args.h"
#include "cli/commands.h"
#include "report/svg_plot.h"

#include <paratorch/errors.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>

namespace paratorch::cli {
namespace {

const std::vector<FlagSpec>& plot_flags() {
  static const std::vector<FlagSpec> flags = {
      {"out", "F.svg", "where to write the chart"},
      {"run", "DIR[=LABEL]", "a run's out_dir (its metrics.jsonl), with the legend's label (repeatable)"},
      {"key", "K", "the metrics.jsonl field to plot against step (default loss; e.g. val_loss, step_ms)"},
      {"title", "T", "the chart's title"},
      {"help", "", "show this help"},
  };
  return flags;
}

// The points (step, key) of one run; UsageError naming the file when it has none.
std::vector<std::pair<double, double>> read_curve(const std::string& dir, const std::string& key) {
  const std::string path = dir + "/metrics.jsonl";
  std::ifstream in(path);
  if (!in) throw UsageError("paratorch plot: cannot read " + path + "; --run names a training run's out_dir");
  std::vector<std::pair<double, double>> points;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains("step") || !j.contains(key) || !j[key].is_number()) continue;
    points.emplace_back(j["step"].get<double>(), j[key].get<double>());
  }
  if (points.empty())
    throw UsageError("paratorch plot: " + path + " has no line with \"" + key + "\"; pick another --key");
  return points;
}

}  // namespace

int run_plot(const std::vector<std::string>& argv) {
  Args args("plot", plot_flags(), argv);
  if (args.has("help")) {
    std::cout << "usage: paratorch plot --out F.svg --run DIR[=LABEL] [--run ...] [--key K] [--title T]\n\n"
              << "Draws one curve per run, from its metrics.jsonl.\n\nflags:\n"
              << format_flags(plot_flags());
    return 0;
  }
  if (!args.has("out") || !args.has("run"))
    throw UsageError("paratorch plot: --out F.svg and at least one --run DIR are required (see --help)");
  static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"};
  const std::string key = args.get_or("key", "loss");
  report::LineChart chart;
  chart.title = args.get_or("title", key + " by step");
  chart.x_label = "step";
  chart.y_label = key;
  for (const auto& run : args.all("run")) {
    const auto eq = run.find('=');
    const std::string dir = run.substr(0, eq);
    const std::string label = eq == std::string::npos ? dir : run.substr(eq + 1);
    chart.series.push_back({label, colors[chart.series.size() % 7], read_curve(dir, key)});
  }
  const std::string out = *args.get("out");
  report::write_text_file(out, chart.to_svg());
  std::printf("plot: runs=%zu key=%s out=%s\n", chart.series.size(), key.c_str(), out.c_str());
  return 0;
}

}  // namespace paratorch::cli
