// src/parallel/pipeline/partition.cpp — see partition.h.
#include "parallel/pipeline/partition.h"

#include "parallel/pipeline/schedule.h"

#include <paratorch/errors.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>
#include <set>
#include <sstream>

namespace paratorch::pipeline {
namespace {

UsageError partition_error(const std::string& problem) {
  return UsageError("paratorch: PipelineEngineOptions::partition " + problem);
}

std::vector<int> parse_int_list(const std::string& text) {
  std::vector<int> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    int v = -1;
    try {
      v = std::stoi(item, &used);
    } catch (...) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < 0)
      throw partition_error("= \"" + text + "\" must be \"params\", \"time\" or a list of block indices like \"3,5\"");
    out.push_back(v);
  }
  return out;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

std::string BlockPartition::text() const {
  if (by == PartitionBy::kParameters) return "params";
  if (by == PartitionBy::kTime) return "time";
  std::string out;
  for (int b : first_blocks) out += (out.empty() ? "" : ",") + std::to_string(b);
  return out;
}

void BlockPartition::validate() const {
  if (by != PartitionBy::kSplitPoints && !first_blocks.empty())
    throw partition_error("::first_blocks are given, but the partition is balanced (by = \"" + text() +
                          "\"); set by = PartitionBy::kSplitPoints or leave first_blocks empty");
  if (by == PartitionBy::kSplitPoints && first_blocks.empty())
    throw partition_error("by = PartitionBy::kSplitPoints needs first_blocks (the first block of stages 1..S-1)");
  for (int b : first_blocks)
    if (b < 0) throw partition_error("::first_blocks = \"" + text() + "\" must be block indices >= 0");
}

BlockPartition BlockPartition::parse(const std::string& text) {
  BlockPartition out;
  if (text == "time") out.by = PartitionBy::kTime;
  else if (text != "params") out = {PartitionBy::kSplitPoints, parse_int_list(text)};
  return out;
}

bool is_balanced_partition(const std::string& by) { return by == "params" || by == "time"; }

int Partition::stage_of_block(int block) const {
  for (int s = 0; s < stages(); ++s)
    if (block < first[static_cast<size_t>(s) + 1]) return s;
  return stages() - 1;
}

std::string Partition::report(const std::vector<models::ModelBlock>& blocks) const {
  std::string out = is_balanced_partition(by) ? "partition by " + by + ":" : "partition at cuts \"" + by + "\":";
  for (int s = 0; s < stages(); ++s) {
    const int a = first[static_cast<size_t>(s)], b = first[static_cast<size_t>(s) + 1];
    char line[256];
    std::snprintf(line, sizeof line, "\n  stage %d: blocks %d..%d (%s .. %s), %lld params", s, a, b - 1,
                  blocks[static_cast<size_t>(a)].name.c_str(), blocks[static_cast<size_t>(b - 1)].name.c_str(),
                  static_cast<long long>(params[static_cast<size_t>(s)]));
    out += line;
    if (by == "time") {
      std::snprintf(line, sizeof line, ", %.3f ms fwd+bwd", cost[static_cast<size_t>(s)]);
      out += line;
    }
  }
  return out;
}

std::vector<int> balanced_cuts(const std::vector<double>& costs, int stages) {
  const int n = static_cast<int>(costs.size());
  if (stages < 1 || stages > n)
    throw UsageError("paratorch: cannot cut " + std::to_string(n) + " blocks into " + std::to_string(stages) + " stages");
  std::vector<double> prefix(static_cast<size_t>(n) + 1, 0.0);
  for (int i = 0; i < n; ++i) prefix[static_cast<size_t>(i) + 1] = prefix[static_cast<size_t>(i)] + costs[static_cast<size_t>(i)];
  const double inf = std::numeric_limits<double>::infinity();
  // best[s][i]: the smallest largest-part cost of blocks [0, i) in s parts;
  // from[s][i]: where the last of those parts starts.
  std::vector<std::vector<double>> best(static_cast<size_t>(stages) + 1, std::vector<double>(static_cast<size_t>(n) + 1, inf));
  std::vector<std::vector<int>> from(static_cast<size_t>(stages) + 1, std::vector<int>(static_cast<size_t>(n) + 1, 0));
  best[0][0] = 0;
  for (int s = 1; s <= stages; ++s)
    for (int i = s; i <= n; ++i)
      for (int j = s - 1; j < i; ++j) {
        const double c = std::max(best[static_cast<size_t>(s) - 1][static_cast<size_t>(j)],
                                  prefix[static_cast<size_t>(i)] - prefix[static_cast<size_t>(j)]);
        // Strictly better only, so ties keep the earliest cut (deterministic).
        if (c < best[static_cast<size_t>(s)][static_cast<size_t>(i)] * (1 - 1e-12)) {
          best[static_cast<size_t>(s)][static_cast<size_t>(i)] = c;
          from[static_cast<size_t>(s)][static_cast<size_t>(i)] = j;
        }
      }
  std::vector<int> first(static_cast<size_t>(stages) + 1, n);
  for (int s = stages, i = n; s >= 1; --s) {
    i = from[static_cast<size_t>(s)][static_cast<size_t>(i)];
    first[static_cast<size_t>(s) - 1] = i;
  }
  return first;
}

std::vector<int> parse_cuts(const std::string& text, int n_blocks, int stages) {
  std::vector<int> cuts = parse_int_list(text);
  if (!cuts.empty() && cuts.front() == 0 && static_cast<int>(cuts.size()) == stages) cuts.erase(cuts.begin());
  if (static_cast<int>(cuts.size()) != stages - 1)
    throw partition_error("= \"" + text + "\" needs " + std::to_string(stages - 1) + " cut point(s) for " +
                          std::to_string(stages) + " stages (the first block of stages 1.." +
                          std::to_string(stages - 1) + ")");
  std::vector<int> first = {0};
  for (int c : cuts) {
    if (c <= first.back() || c >= n_blocks)
      throw partition_error("= \"" + text + "\": cut points must increase and lie in 1.." +
                            std::to_string(n_blocks - 1) + " (the model has " + std::to_string(n_blocks) + " blocks)");
    first.push_back(c);
  }
  first.push_back(n_blocks);
  return first;
}

std::vector<double> block_parameter_counts(models::BundledModel& model, const std::vector<models::ModelBlock>& blocks) {
  auto params = model.named_parameters(true);
  std::vector<double> out;
  for (const auto& b : blocks) {
    double n = 0;
    for (const auto& name : b.parameters) n += static_cast<double>(params[name].numel());
    for (const auto& name : b.shared) n += static_cast<double>(params[name].numel());
    out.push_back(n);
  }
  return out;
}

std::vector<double> measure_block_ms(std::vector<models::ModelBlock>& blocks, const torch::Tensor& sample_input,
                                     int repeats) {
  using clock = std::chrono::steady_clock;
  std::vector<std::vector<double>> samples(blocks.size());
  for (int rep = 0; rep < repeats + 1; ++rep) {  // the first pass warms up
    torch::Tensor x = sample_input;
    for (size_t i = 0; i < blocks.size(); ++i) {
      torch::Tensor in = x.is_floating_point() ? x.detach().requires_grad_(true) : x;
      const auto t0 = clock::now();
      torch::Tensor y = blocks[i].forward(in);
      y.backward(torch::ones_like(y));
      const double ms = std::chrono::duration<double, std::milli>(clock::now() - t0).count();
      if (rep > 0) samples[i].push_back(ms);
      x = y.detach();
    }
  }
  std::vector<double> out;
  for (auto& s : samples) out.push_back(median_of(s));
  return out;
}

void check_block_count(int n_blocks, int pp, int virtual_stages, const std::string& schedule,
                       const std::string& model_name) {
  const int stages = pp * virtual_stages;
  const ScheduleKind* kind = find_schedule_kind(schedule);
  const bool v_shape = kind && kind->v_shape, interleaves = kind && kind->interleaves_chunks;
  // The V's two chunks per rank are the schedule's, not an option the user set.
  const std::string chunks = v_shape ? " x the 2 chunks per rank of schedule \"" + schedule + "\""
                             : virtual_stages > 1
                                 ? " x PipelineEngineOptions::virtual_stages = " + std::to_string(virtual_stages)
                                 : std::string();
  if (stages > n_blocks)
    throw UsageError("paratorch: Layout::pp = " + std::to_string(pp) + chunks + " needs " + std::to_string(stages) +
                     " blocks but model \"" + model_name + "\" has " + std::to_string(n_blocks) +
                     "; lower Layout::pp or give the model more blocks (ModelConfig::n_layers)");
  if (v_shape && n_blocks % stages != 0)
    throw UsageError("paratorch: schedule \"" + schedule + "\" needs the model's " + std::to_string(n_blocks) +
                     " blocks divisible by 2 x Layout::pp = " + std::to_string(stages) +
                     " (each rank's two chunks of the V hold equal halves; " + std::to_string(n_blocks) +
                     " blocks over " + std::to_string(pp) +
                     " ranks do not halve evenly); change ModelConfig::n_layers or Layout::pp");
  if (interleaves && n_blocks % stages != 0)
    throw UsageError(
        "paratorch: schedule \"" + schedule + "\" needs the model's " + std::to_string(n_blocks) +
        " blocks divisible by Layout::pp x PipelineEngineOptions::virtual_stages = " + std::to_string(stages) +
        "; change ModelConfig::n_layers, Layout::pp or PipelineEngineOptions::virtual_stages");
}

Partition make_partition(const BlockPartition& by, models::BundledModel& model,
                         const std::vector<models::ModelBlock>& blocks, int stages,
                         const std::vector<double>& block_ms) {
  by.validate();
  return make_partition(by.text(), model, blocks, stages, block_ms);
}

Partition make_partition(const std::string& by, models::BundledModel& model,
                         const std::vector<models::ModelBlock>& blocks, int stages,
                         const std::vector<double>& block_ms) {
  const int n = static_cast<int>(blocks.size());
  Partition p;
  p.by = by;
  const std::vector<double> counts = block_parameter_counts(model, blocks);
  if (by == "params") p.first = balanced_cuts(counts, stages);
  else if (by == "time") p.first = balanced_cuts(block_ms, stages);
  else p.first = parse_cuts(by, n, stages);
  const std::vector<double>& unit = by == "time" ? block_ms : counts;
  for (int s = 0; s < stages; ++s) {
    double c = 0, params = 0;
    for (int i = p.first[static_cast<size_t>(s)]; i < p.first[static_cast<size_t>(s) + 1]; ++i) {
      c += unit.empty() ? 0 : unit[static_cast<size_t>(i)];
      params += counts[static_cast<size_t>(i)];
    }
    p.cost.push_back(c);
    p.params.push_back(static_cast<int64_t>(params));
  }
  return p;
}

}  // namespace paratorch::pipeline
