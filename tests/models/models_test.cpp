// tests/models/models_test.cpp — the bundled gpt and mlp models.
#include <gtest/gtest.h>

#include "data/synthetic.h"
#include "models/model.h"
#include "verify/equivalence.h"
#include <paratorch/errors.h>

using paratorch::models::make_model;

TEST(Models, GptUsesNanoGptNamesAndTiesTheHead) {
  auto c = paratorch::verify::small_model("gpt");
  auto m = make_model(c);
  auto params = m->named_parameters();
  for (const char* name : {"transformer.wte.weight", "transformer.wpe.weight",
                           "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.bias",
                           "transformer.h.1.mlp.c_proj.weight", "transformer.ln_f.bias"})
    EXPECT_TRUE(params.contains(name)) << name;
  EXPECT_FALSE(params.contains("lm_head.weight"));  // tied to wte
  EXPECT_EQ(params.size(), 2u + 12u * c.n_layers + 2u);
}

TEST(Models, GptInitAndCausality) {
  auto c = paratorch::verify::small_model("gpt");
  auto m = make_model(c);
  m->initialize(1234);
  auto p = m->named_parameters();
  EXPECT_NEAR(p["transformer.wte.weight"].std().item<double>(), 0.02, 0.002);
  EXPECT_NEAR(p["transformer.h.0.attn.c_proj.weight"].std().item<double>(), 0.02 / std::sqrt(4.0), 0.002);
  EXPECT_TRUE(torch::equal(p["transformer.h.0.ln_1.weight"], torch::ones({c.d_model})));
  auto batch = paratorch::data::synthetic_batch(c, {0, 1}, 99);
  EXPECT_EQ(batch.input.sizes(), (std::vector<int64_t>{2, c.seq_len}));
  auto logits = m->forward(batch.input);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, c.seq_len, c.vocab_size}));
  // Changing the last token must not change any earlier position's logits.
  auto changed = batch.input.clone();
  changed.index_put_({0, c.seq_len - 1}, (changed[0][c.seq_len - 1].item<int64_t>() + 1) % 256);
  auto logits2 = m->forward(changed);
  EXPECT_TRUE(torch::allclose(logits.narrow(1, 0, c.seq_len - 1), logits2.narrow(1, 0, c.seq_len - 1)));
  EXPECT_FALSE(torch::allclose(logits[0][c.seq_len - 1], logits2[0][c.seq_len - 1]));
  // Untrained loss is about ln(vocab).
  EXPECT_NEAR(m->loss(batch).item<double>(), std::log(256.0), 0.2);
}

TEST(Models, MlpShapesAndLoss) {
  auto c = paratorch::verify::small_model("mlp");
  auto m = make_model(c);
  m->initialize(1);
  auto batch = paratorch::data::synthetic_batch(c, {0, 1, 2, 3}, 5);
  EXPECT_EQ(m->forward(batch.input).sizes(), (std::vector<int64_t>{4, c.n_classes}));
  EXPECT_TRUE(std::isfinite(m->loss(batch).item<double>()));
}

TEST(Models, SyntheticSamplesDependOnlyOnTheirId) {
  auto c = paratorch::verify::small_model("mlp");
  auto a = paratorch::data::synthetic_batch(c, {5, 6, 7, 8}, 3);
  auto b = paratorch::data::synthetic_batch(c, {7, 8}, 3);
  EXPECT_TRUE(torch::equal(a.input.narrow(0, 2, 2), b.input));
  EXPECT_TRUE(torch::equal(a.target.narrow(0, 2, 2), b.target));
}

TEST(Models, BadConfigNamesTheKey) {
  auto c = paratorch::verify::small_model("gpt");
  c.n_heads = 3;
  EXPECT_THROW(make_model(c), paratorch::UsageError);
  c.name = "resnet9000";
  try {
    make_model(c);
    FAIL();
  } catch (const paratorch::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("valid models: gpt, mlp"), std::string::npos);
  }
}
