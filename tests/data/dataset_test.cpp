// tests/data/dataset_test.cpp — text corpus windows, splits, and the factory's errors.
#include <gtest/gtest.h>

#include "data/dataset.h"
#include "data/text_corpus.h"
#include "verify/equivalence.h"
#include <paratorch/errors.h>

#include <fstream>

using paratorch::data::TextCorpus;

namespace {
std::string sample_text() {
  std::string t;
  for (int i = 0; i < 400; ++i) t += "In the beginning " + std::to_string(i) + ". ";
  return t;
}
}  // namespace

TEST(TextCorpus, WindowsAreShiftedByOneAndDependOnlyOnTheId) {
  TextCorpus c("test", sample_text(), 16, 7);
  auto a = c.train_batch({3, 4, 5});
  auto b = c.train_batch({5});
  EXPECT_EQ(a.input.sizes(), (std::vector<int64_t>{3, 16}));
  EXPECT_TRUE(torch::equal(a.input[2], b.input[0]));
  EXPECT_TRUE(torch::equal(a.input[0].narrow(0, 1, 15), a.target[0].narrow(0, 0, 15)));
  EXPECT_EQ(c.items_per_sample(), 16);
  EXPECT_EQ(c.throughput_unit(), "tokens/s");
}

TEST(TextCorpus, ValidationComesFromTheLastTenthOnly) {
  std::string text(1000, 'a');
  text.replace(900, 100, std::string(100, 'z'));  // the held-out tenth is all 'z'
  TextCorpus c("split", text, 8, 1);
  std::vector<int64_t> ids(50);
  for (int i = 0; i < 50; ++i) ids[static_cast<size_t>(i)] = i;
  EXPECT_TRUE((c.validation_batch(ids).input == 'z').all().item<bool>());
  EXPECT_TRUE((c.train_batch(ids).target == 'a').all().item<bool>());
  EXPECT_NEAR(TextCorpus("h", std::string(500, 'x') + std::string(500, 'y'), 8, 1).unigram_entropy(),
              std::log(9.0 / 4.0) * 4.0 / 9.0 + std::log(9.0 / 5.0) * 5.0 / 9.0, 1e-9);
}

TEST(Dataset, KjvIsTheBibleWithItsKnownUnigramEntropy) {
  std::string kjv = paratorch::data::load_kjv_text();
  EXPECT_GT(kjv.size(), 4000000u);
  EXPECT_NE(kjv.find("In the beginning God created the heaven and the earth."), std::string::npos);
  TextCorpus c("kjv", kjv, 64, 1);
  EXPECT_NEAR(c.unigram_entropy(), 3.07, 0.03);
}

TEST(Dataset, FactoryRejectsMismatchesAndMissingFiles) {
  auto mlp = paratorch::verify::small_model("mlp");
  auto gpt = paratorch::verify::small_model("gpt");
  EXPECT_THROW(paratorch::data::make_dataset("kjv", mlp, 1), paratorch::UsageError);
  try {
    paratorch::data::make_dataset("/no/such/corpus.txt", gpt, 1);
    FAIL();
  } catch (const paratorch::RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("/no/such/corpus.txt"), std::string::npos);
  }
  std::string path = ::testing::TempDir() + "tiny_corpus.txt";
  std::ofstream(path) << "too short";
  EXPECT_THROW(paratorch::data::make_dataset(path, gpt, 1), paratorch::UsageError);
  auto syn = paratorch::data::make_dataset("synthetic", mlp, 3);
  EXPECT_FALSE(torch::equal(syn->train_batch({0}).input, syn->validation_batch({0}).input));
}
