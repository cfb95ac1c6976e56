// src/data/dataset.cpp — the dataset factory and the synthetic datasets.
#include "data/dataset.h"

#include "data/fashion_mnist.h"
#include "data/mf_synthetic.h"
#include "data/synthetic.h"
#include "data/text_corpus.h"
#include "models/registry.h"
#include <paratorch/errors.h>

namespace paratorch::data {

uint64_t sample_hash(uint64_t seed, int64_t id) {
  // SplitMix64 of (seed, id): consecutive ids land far apart.
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (static_cast<uint64_t>(id) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

namespace {

/// Random features/tokens for benchmarks and equivalence runs (synthetic.h).
class SyntheticDataset : public Dataset {
 public:
  SyntheticDataset(models::ModelConfig model, uint64_t seed)
      : model_(std::move(model)), family_(models::model_family(model_.name)), seed_(seed) {}
  models::Batch train_batch(const std::vector<int64_t>& ids) const override {
    return synthetic_batch(model_, ids, seed_);
  }
  models::Batch validation_batch(const std::vector<int64_t>& ids) const override {
    std::vector<int64_t> held_out(ids);
    for (auto& id : held_out) id += kValidationOffset;  // never drawn in training
    return synthetic_batch(model_, held_out, seed_);
  }
  int64_t items_per_sample() const override { return family_.items_per_sample(model_); }
  std::string throughput_unit() const override { return family_.throughput_unit; }
  std::string describe() const override {
    return family_.input == models::ModelInput::kTokens
               ? "synthetic: random token windows whose second half repeats the first"
               : "synthetic: Gaussian features labelled by a fixed random linear teacher";
  }

 private:
  static constexpr int64_t kValidationOffset = int64_t{1} << 40;
  models::ModelConfig model_;
  const models::ModelFamily& family_;
  uint64_t seed_;
};

void require_model(const std::string& source, const models::ModelConfig& model,
                   std::initializer_list<const char*> fits) {
  for (const char* name : fits)
    if (model.name == name) return;
  std::string list;
  for (const char* name : fits) list += (list.empty() ? "" : ", ") + std::string(name);
  throw UsageError("paratorch: [data] source = \"" + source + "\" does not fit [model] name = \"" +
                   model.name + "\"; it feeds: " + list);
}

}  // namespace

std::unique_ptr<Dataset> make_dataset(const std::string& source, const models::ModelConfig& model,
                                      uint64_t seed) {
  if (source == "synthetic") {
    require_model(source, model, {"gpt", "mlp"});
    return std::make_unique<SyntheticDataset>(model, seed);
  }
  if (source == "kjv") {
    require_model(source, model, {"gpt"});
    return std::make_unique<TextCorpus>("kjv", load_kjv_text(), model.seq_len, seed);
  }
  if (source == "mf_synthetic") {
    require_model(source, model, {"mf"});
    return std::make_unique<MfSynthetic>(model, seed);
  }
  if (source == "fashion_mnist") {
    require_model(source, model, {"cnn", "mlp"});
    return std::make_unique<FashionMnist>(model, seed);  // checks mlp's d_in and n_classes too
  }
  // Anything else is a text file's path.
  require_model(source, model, {"gpt"});
  return std::make_unique<TextCorpus>(source, read_text_file(source), model.seq_len, seed);
}

}  // namespace paratorch::data
