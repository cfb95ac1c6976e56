// src/data/dataset.h — what the trainer reads samples from.
//
// A dataset maps a global sample id to a sample, deterministically from the
// seed. So the global batch of step s (ids from DistributedSampler) is the
// same set of samples in every layout, and a resumed run at step s reads
// exactly what an uninterrupted run would have read.
#pragma once
#include "models/model.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace paratorch::data {

class Dataset {
 public:
  virtual ~Dataset() = default;
  /// Training samples `ids` (any ids >= 0; each is a pure function of id).
  virtual models::Batch train_batch(const std::vector<int64_t>& ids) const = 0;
  /// Validation samples `ids` from the held-out split.
  virtual models::Batch validation_batch(const std::vector<int64_t>& ids) const = 0;
  /// Predictions per sample, for throughput: seq_len tokens for text, 1 otherwise.
  virtual int64_t items_per_sample() const { return 1; }
  /// "tokens/s" or "samples/s".
  virtual std::string throughput_unit() const { return "samples/s"; }
  /// The loss a model that ignores its input reaches (unigram entropy for
  /// text, the noise variance for mf_synthetic), drawn on loss.svg; 0 = none.
  virtual double baseline_loss() const { return 0; }
  /// One line for the start-up report ("kjv: 4298239 bytes, ...").
  virtual std::string describe() const = 0;
};

/// Builds the dataset named by [data] source for `model` (see docs/config.md).
/// Throws UsageError for a source that does not fit the model, RuntimeFailure
/// naming the file or package when data is missing.
std::unique_ptr<Dataset> make_dataset(const std::string& source, const models::ModelConfig& model,
                                      uint64_t seed);

/// A well-mixed 64-bit hash of (seed, id) for choosing samples.
uint64_t sample_hash(uint64_t seed, int64_t id);

}  // namespace paratorch::data
