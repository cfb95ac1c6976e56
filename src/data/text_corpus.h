// src/data/text_corpus.h — byte-level language-modelling data: the King James
// Bible (Debian's bible-kjv) or any text file.
//
// Tokens are bytes (vocab 256). The last 10% of the text is the validation
// split, the rest is training. Sample id i is the window of seq_len + 1 bytes
// starting at a position drawn from hash(seed, i): input = bytes[0:T],
// target = bytes[1:T+1].
#pragma once
#include "data/dataset.h"

namespace paratorch::data {

class TextCorpus : public Dataset {
 public:
  TextCorpus(std::string name, std::string text, int seq_len, uint64_t seed);
  models::Batch train_batch(const std::vector<int64_t>& ids) const override;
  models::Batch validation_batch(const std::vector<int64_t>& ids) const override;
  int64_t items_per_sample() const override { return seq_len_; }
  std::string throughput_unit() const override { return "tokens/s"; }
  std::string describe() const override;
  /// Unigram entropy of the training bytes in nats: the loss of the best
  /// model that ignores context (3.07 for the KJV text).
  double unigram_entropy() const;
  double baseline_loss() const override { return unigram_entropy(); }
  const std::string& text() const { return text_; }

 private:
  models::Batch windows(const std::vector<int64_t>& ids, int64_t begin, int64_t end, uint64_t salt) const;
  std::string name_, text_;
  int seq_len_;
  uint64_t seed_;
  int64_t split_;  // first validation byte
};

/// The KJV text, generated once with `bible 'gen1:1-rev22:21'` and cached in
/// $XDG_CACHE_HOME/paratorch (or ~/.cache/paratorch).
std::string load_kjv_text();

/// A whole file's bytes; RuntimeFailure naming the path when unreadable.
std::string read_text_file(const std::string& path);

}  // namespace paratorch::data
