// tests/models/models_test.cpp — the bundled models: names, init, shapes, and their blocks.
#include <gtest/gtest.h>

#include "data/dataset.h"
#include "data/synthetic.h"
#include "models/gpt.h"
#include "models/model.h"
#include "models/registry.h"
#include "verify/equivalence.h"
#include <paratorch/errors.h>

#include <cmath>
#include <map>
#include <set>

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

// The attention layer computes softmax(q k^T / sqrt(hd)) with the future
// masked, as written out here (its kernels are arranged differently).
TEST(Models, GptAttentionMatchesTheTextbookFormula) {
  const int64_t B = 2, T = 8, C = 32, H = 4, hd = C / H;
  torch::manual_seed(3);
  paratorch::models::CausalSelfAttention attn(C, H);
  {
    // The layer's parameters are allocated, not initialized (the model's
    // initialize() does that): left as they are, the memory decides them.
    torch::NoGradGuard no_grad;
    for (auto& p : attn->parameters()) p.normal_(0.0, 0.3);
  }
  auto x = torch::randn({B, T, C});
  auto qkv = attn->c_attn(x).split(C, 2);
  auto heads = [&](const torch::Tensor& t) { return t.view({B, T, H, hd}).transpose(1, 2); };
  auto scores = torch::matmul(heads(qkv[0]), heads(qkv[1]).transpose(-2, -1)) / std::sqrt(double(hd));
  auto future = torch::ones({T, T}, torch::kBool).triu(1);
  auto att = torch::softmax(scores.masked_fill(future, -std::numeric_limits<float>::infinity()), -1);
  auto expected = attn->c_proj(torch::matmul(att, heads(qkv[2])).transpose(1, 2).reshape({B, T, C}));
  ASSERT_GT(expected.abs().max().item<double>(), 0.1);  // not all zeros: compares something
  EXPECT_TRUE(torch::allclose(attn(x), expected, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(attn(x.narrow(1, 0, 5)), expected.narrow(1, 0, 5), 1e-5, 1e-6));  // shorter input
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
    EXPECT_NE(std::string(e.what()).find("valid models: gpt, mlp, cnn, mf"), std::string::npos);
  }
}

TEST(Models, CnnClassifiesImagesAndItsNormIsPerSample) {
  paratorch::models::ModelConfig c;
  c.name = "cnn"; c.d_model = 8; c.n_layers = 3; c.n_classes = 10;
  auto m = make_model(c);
  m->initialize(5);
  auto x = torch::randn({4, 1, 28, 28});
  auto logits = m->forward(x);
  EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{4, 10}));
  // GroupNorm: a sample's output does not depend on its batch-mates (so data
  // parallelism is equivalent), unlike BatchNorm.
  EXPECT_TRUE(torch::allclose(m->forward(x.narrow(0, 1, 1)), logits.narrow(0, 1, 1), 1e-5, 1e-6));
}

TEST(Models, MatrixFactorizationFitsTheSyntheticRatings) {
  paratorch::models::ModelConfig c;
  c.name = "mf"; c.n_users = 50; c.n_items = 40; c.n_factors = 4;
  auto data = paratorch::data::make_dataset("mf_synthetic", c, 11);
  auto m = make_model(c);
  m->initialize(1);
  torch::optim::Adam opt(m->parameters(), 0.05);
  std::vector<int64_t> ids(512);
  double first = 0, last = 0;
  for (int step = 0; step < 300; ++step) {
    for (size_t j = 0; j < ids.size(); ++j) ids[j] = step * 512 + static_cast<int64_t>(j);
    opt.zero_grad();
    auto loss = m->loss(data->train_batch(ids));
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  auto val = data->validation_batch(ids);
  double rmse = std::sqrt(m->loss(val).item<double>());
  EXPECT_LT(last, first / 10);
  EXPECT_LT(rmse, 0.3) << "noise floor is 0.1";
}

namespace {

// Small configs of each bundled model and an input batch for it.
std::vector<std::pair<paratorch::models::ModelConfig, torch::Tensor>> small_models_and_inputs() {
  paratorch::models::ModelConfig gpt;
  gpt.n_layers = 2, gpt.d_model = 16, gpt.n_heads = 2, gpt.seq_len = 8;
  paratorch::models::ModelConfig mlp;
  mlp.name = "mlp", mlp.n_layers = 2, mlp.d_model = 16, mlp.d_in = 12;
  paratorch::models::ModelConfig cnn;
  cnn.name = "cnn", cnn.n_layers = 4, cnn.d_model = 4;
  paratorch::models::ModelConfig mf;
  mf.name = "mf", mf.n_users = 10, mf.n_items = 7, mf.n_factors = 3;
  torch::manual_seed(0);
  return {{gpt, torch::randint(0, 256, {3, 8}, torch::kLong)},
          {mlp, torch::randn({5, 12})},
          {cnn, torch::randn({2, 1, 28, 28})},
          {mf, torch::stack({torch::randint(0, 10, {6}, torch::kLong), torch::randint(0, 7, {6}, torch::kLong)}, 1)}};
}

}  // namespace

TEST(Models, BlocksChainToTheForwardAndOwnEveryParameterOnce) {
  for (auto& [config, input] : small_models_and_inputs()) {
    SCOPED_TRACE(config.name);
    auto m = make_model(config);
    m->initialize(7);
    torch::NoGradGuard no_grad;
    auto blocks = m->blocks();
    ASSERT_FALSE(blocks.empty());
    auto x = input;
    for (const auto& b : blocks) x = b.forward(x);
    EXPECT_TRUE(torch::equal(x, m->forward(input)));
    std::map<std::string, int> owners;
    std::set<std::string> seen_so_far;
    for (const auto& b : blocks) {
      for (const auto& name : b.shared) EXPECT_TRUE(seen_so_far.count(name)) << b.name << " shares " << name;
      for (const auto& name : b.parameters) ++owners[name], seen_so_far.insert(name);
    }
    for (const auto& item : m->named_parameters(true)) EXPECT_EQ(owners[item.key()], 1) << item.key();
    EXPECT_EQ(owners.size(), m->named_parameters(true).size());
  }
}

TEST(Models, GptBlocksAreEmbedLayersHead) {
  paratorch::models::ModelConfig c;
  c.n_layers = 3, c.d_model = 16, c.n_heads = 2, c.seq_len = 8;
  auto blocks = make_model(c)->blocks();
  ASSERT_EQ(blocks.size(), 5u);
  EXPECT_EQ(blocks[0].name, "embed");
  EXPECT_EQ(blocks[2].name, "transformer.h.1");
  EXPECT_EQ(blocks[4].name, "head");
  EXPECT_EQ(blocks[4].shared, std::vector<std::string>{"transformer.wte.weight"});
}

// The pipeline computes the loss from the last stage's output with criterion().
TEST(Models, CriterionOfTheForwardIsTheLoss) {
  for (auto& [config, input] : small_models_and_inputs()) {
    SCOPED_TRACE(config.name);
    auto m = make_model(config);
    m->initialize(7);
    if (config.name == "cnn") continue;  // no synthetic images; its loss is cross-entropy as mlp's
    auto data = paratorch::data::make_dataset(config.name == "mf" ? "mf_synthetic" : "synthetic", config, 3);
    auto batch = data->train_batch({0, 1, 2, 3});
    EXPECT_TRUE(torch::allclose(m->criterion(m->forward(batch.input), batch), m->loss(batch)));
  }
}

// The registry: one family per bundled model, in the order messages list them,
// each with the facts the trainer, the data and verify read from it.
TEST(ModelRegistry, FamiliesAndTheirFacts) {
  using paratorch::models::model_family;
  EXPECT_EQ(paratorch::models::model_family_names(), (std::vector<std::string>{"gpt", "mlp", "cnn", "mf"}));
  auto gpt = paratorch::verify::small_model("gpt");
  EXPECT_EQ(model_family("gpt").items_per_sample(gpt), gpt.seq_len);
  EXPECT_EQ(model_family("gpt").throughput_unit, "tokens/s");
  EXPECT_EQ(model_family("gpt").input, paratorch::models::ModelInput::kTokens);
  EXPECT_TRUE(model_family("gpt").text_sample);
  for (const char* name : {"mlp", "cnn", "mf"}) {
    SCOPED_TRACE(name);
    const auto& f = model_family(name);
    EXPECT_EQ(f.items_per_sample(paratorch::verify::small_model(name)), 1);
    EXPECT_EQ(f.throughput_unit, "samples/s");
    EXPECT_FALSE(f.text_sample);
  }
  // The validation metric each family is judged by (docs/config.md), from loss 2 and accuracy 0.75.
  EXPECT_EQ(model_family("gpt").metric_key, "val_perplexity");
  EXPECT_DOUBLE_EQ(model_family("gpt").metric(2.0, -1), std::exp(2.0));
  EXPECT_EQ(model_family("mf").metric_key, "val_rmse");
  EXPECT_DOUBLE_EQ(model_family("mf").metric(2.0, -1), std::sqrt(2.0));
  for (const char* name : {"mlp", "cnn"}) {
    EXPECT_EQ(model_family(name).metric_key, "val_accuracy");
    EXPECT_DOUBLE_EQ(model_family(name).metric(2.0, 0.75), 0.75);
    EXPECT_TRUE(std::isnan(model_family(name).metric(2.0, -1))) << "no accuracy measured: nothing to log";
  }
  EXPECT_EQ(model_family("mf").loss_name, "MSE");
  EXPECT_EQ(model_family("mlp").loss_name, "cross-entropy (nats)");
  EXPECT_EQ(model_family("mf").verify_source, "mf_synthetic");
  EXPECT_EQ(model_family("mlp").verify_source, "synthetic");
  EXPECT_EQ(model_family("cnn").verify_source, "") << "cnn's only data is fashion_mnist";
  // Each family builds its own model.
  for (const char* name : {"gpt", "mlp", "cnn", "mf"})
    EXPECT_EQ(paratorch::models::model_family(name).make(paratorch::verify::small_model(name), {})->name().empty(),
              false);
}

TEST(ModelRegistry, UnknownNameListsTheRegisteredOnes) {
  try {
    paratorch::models::model_family("resnet");
    FAIL() << "no throw";
  } catch (const paratorch::UsageError& e) {
    EXPECT_STREQ(e.what(), "paratorch: unknown model 'resnet'; valid models: gpt, mlp, cnn, mf");
  }
  try {
    paratorch::verify::verify_config("cnn");
    FAIL() << "no throw";
  } catch (const paratorch::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown model 'cnn'; valid models: gpt, mlp, mf (or --config"),
              std::string::npos) << e.what();
  }
}

// The activation estimate of each family, against the formulas it replaced
// (gpt: Korthikanti et al. 2022 per layer plus the logits; others: 4 vectors
// of d_model per layer and sample).
TEST(ModelRegistry, ActivationEstimate) {
  auto gpt = paratorch::verify::small_model("gpt");  // 2 layers, d 64, 4 heads, seq 32, vocab 256
  const double s = 32, b = 3, h = 64, a = 4, c = 2;
  const double per_layer = s * b * h * (34 + 5 * a * s / h) * c / 2;
  EXPECT_DOUBLE_EQ(paratorch::models::model_family("gpt").activation_bytes(gpt, {b, c, 0}),
                   2 * per_layer + s * b * 256 * c * 2);
  EXPECT_DOUBLE_EQ(paratorch::models::model_family("gpt").activation_bytes(gpt, {b, c, 3}),
                   2 * s * b * h * c + per_layer + s * b * 256 * c * 2);
  auto mlp = paratorch::verify::small_model("mlp");
  EXPECT_DOUBLE_EQ(paratorch::models::model_family("mlp").activation_bytes(mlp, {b, 4, 0}), 2 * 4 * b * 64 * 4);
}
