// src/parallel/pipeline/partition.h — cutting a model's ordered blocks into
// contiguous pipeline stages.
//
// A model is an ordered list of blocks (models::ModelBlock); a partition
// assigns blocks [first[s], first[s+1]) to model stage s, every stage at
// least one block. Three ways to choose the cuts ([parallel] partition):
//   "params"  minimize the largest stage's parameter count (memory); a
//             block's count includes tied weights it uses (gpt's head keeps
//             a copy of the token embedding);
//   "time"    minimize the slowest stage, from each block's measured
//             forward+backward time on a sample micro-batch (speed);
//   "3,5"     explicit: the first block of stages 1..S-1 (a leading 0 may
//             be given too: "0,3,5").
// Both balanced forms solve the linear-partition problem exactly: the
// contiguous split into S parts that minimizes the largest part's cost
// (dynamic programming over prefix sums, O(S n^2) for n blocks).
#pragma once
#include "models/model.h"
#include <paratorch/pipeline.h>

#include <string>
#include <vector>

namespace paratorch::pipeline {

/// True when `by` is "params" or "time"; otherwise it must be a cut list.
bool is_balanced_partition(const std::string& by);

/// How to cut a model's blocks, typed: PartitionBy::kParameters ("params"),
/// kTime ("time") or kSplitPoints at `first_blocks` ("3,5").
struct BlockPartition {
  PartitionBy by = PartitionBy::kParameters;
  /// kSplitPoints: the first block of stages 1..S-1 (a leading 0 is allowed).
  std::vector<int> first_blocks;
  /// "params", "time" or the cut list "3,5": the words of [parallel] partition.
  std::string text() const;
  /// UsageError naming PipelineEngineOptions::partition when the cuts are
  /// negative or given for a balanced partition.
  void validate() const;
  /// From the words "params" | "time" | "3,5".
  static BlockPartition parse(const std::string& text);
};

struct Partition {
  std::string by;                 // how the cuts were chosen
  std::vector<int> first;         // stages + 1 entries; first.back() = block count
  std::vector<double> cost;       // per stage, in the unit `by` balances (params, ms)
  std::vector<int64_t> params;    // per stage: parameters it holds (tied copies included)
  int stages() const { return static_cast<int>(first.size()) - 1; }
  int stage_of_block(int block) const;
  /// Start-up report: one line per stage with its blocks, parameters and cost.
  std::string report(const std::vector<models::ModelBlock>& blocks) const;
};

/// The contiguous split of `costs` into `stages` non-empty parts that
/// minimizes the largest part (ties: the earliest cuts). Returns `first`.
std::vector<int> balanced_cuts(const std::vector<double>& costs, int stages);

/// Parses an explicit cut list for `n_blocks` blocks and `stages` stages.
std::vector<int> parse_cuts(const std::string& text, int n_blocks, int stages);

/// Parameters each block holds (owned and shared), from the model.
std::vector<double> block_parameter_counts(models::BundledModel& model, const std::vector<models::ModelBlock>& blocks);

/// Median forward+backward milliseconds of each block on `sample_input`
/// (each block's backward runs alone, from a detached input).
std::vector<double> measure_block_ms(std::vector<models::ModelBlock>& blocks, const torch::Tensor& sample_input,
                                     int repeats = 3);

/// Checks that `blocks` can form `stages` stages (`virtual_stages` chunks per
/// rank for interleaved); UsageError naming the keys to change.
void check_block_count(int n_blocks, int pp, int virtual_stages, const std::string& schedule,
                       const std::string& model_name);

/// Cuts `blocks` into `stages` stages. `block_ms` is needed only for "time".
Partition make_partition(const std::string& by, models::BundledModel& model,
                         const std::vector<models::ModelBlock>& blocks, int stages,
                         const std::vector<double>& block_ms = {});
Partition make_partition(const BlockPartition& by, models::BundledModel& model,
                         const std::vector<models::ModelBlock>& blocks, int stages,
                         const std::vector<double>& block_ms = {});

}  // namespace paratorch::pipeline
