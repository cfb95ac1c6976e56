// tests/tensor_parallel/layers_test.cpp — each tensor-parallel layer against
// its unsplit counterpart on random inputs: forward output and the gradients
// of input and weights (the shard's gradient is the slice of the full one).
// The world is the tp group (np 2 and 4).
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "tensor_parallel/layers.h"
#include "tensor_parallel/mappings.h"
#include <paratorch/errors.h>
#include <paratorch/init.h>

using namespace paratorch::tensor_parallel;
namespace F = torch::nn::functional;

namespace {

TensorParallelContext layers_tp() { return {test_world().comm(), false}; }

torch::Tensor layers_rnd(torch::IntArrayRef shape, const std::string& name) {
  return torch::randn(shape, paratorch::generator_for(17, name));
}

void layers_expect_close(const torch::Tensor& a, const torch::Tensor& b, const char* what) {
  EXPECT_TRUE(torch::allclose(a, b, 1e-4, 1e-5)) << what << ": max diff " << (a - b).abs().max().item<double>();
}

void layers_load(torch::Tensor& param, const torch::Tensor& value) {
  torch::NoGradGuard no_grad;
  param.copy_(value);
}

}  // namespace

TEST(TensorParallelLayers, ColumnParallelMatchesLinear) {
  auto tp = layers_tp();
  const int n = tp.size();
  const int64_t in = 5, out = 6 * n;
  for (int parts : {1, 3}) {
    auto W = layers_rnd({out, in}, "W").requires_grad_(), b = layers_rnd({out}, "b").requires_grad_();
    auto x_ref = layers_rnd({2, 3, in}, "x").requires_grad_();
    auto y_ref = F::linear(x_ref, W, b);
    auto w_out = layers_rnd(y_ref.sizes(), "gy");
    (y_ref * w_out).sum().backward();

    ColumnParallelLinear layer(in, out, tp, true, /*gather_output=*/false, parts);
    const ShardSpec spec = layer->shard_spec("weight");
    layers_load(layer->weight, spec.slice(W.detach()));
    layers_load(layer->bias, spec.slice(b.detach()));
    auto x = x_ref.detach().clone().requires_grad_();
    auto y = layer(x);
    ShardSpec out_spec = spec;
    out_spec.dim = 2;  // the output's feature dimension splits like the weight rows
    layers_expect_close(y, out_spec.slice(y_ref.detach()), "column output");
    (y * out_spec.slice(w_out)).sum().backward();
    layers_expect_close(x.grad(), x_ref.grad(), "column input grad");
    layers_expect_close(layer->weight.grad(), spec.slice(W.grad()), "column weight grad");
    layers_expect_close(layer->bias.grad(), spec.slice(b.grad()), "column bias grad");
    EXPECT_TRUE(torch::equal(spec.assemble([&] {
      std::vector<torch::Tensor> shards;
      for (int r = 0; r < n; ++r) shards.push_back(ShardSpec{0, parts, r, n}.slice(W.detach()));
      return shards;
    }()), W.detach())) << "assemble inverts slice";
  }
}

TEST(TensorParallelLayers, ColumnParallelGatherOutput) {
  auto tp = layers_tp();
  const int64_t in = 4, out = 2 * tp.size();
  auto W = layers_rnd({out, in}, "W"), x = layers_rnd({3, in}, "x");
  ColumnParallelLinear layer(in, out, tp, /*bias=*/false, /*gather_output=*/true);
  layers_load(layer->weight, layer->shard_spec("weight").slice(W));
  layers_expect_close(layer(x), F::linear(x, W), "gathered output");
}

TEST(TensorParallelLayers, RowParallelMatchesLinear) {
  auto tp = layers_tp();
  const int n = tp.size(), r = tp.rank();
  const int64_t in = 4 * n, out = 5;
  auto W = layers_rnd({out, in}, "W").requires_grad_(), b = layers_rnd({out}, "b").requires_grad_();
  auto x_ref = layers_rnd({2, 3, in}, "x").requires_grad_();
  auto y_ref = F::linear(x_ref, W, b);
  auto w_out = layers_rnd(y_ref.sizes(), "gy");
  (y_ref * w_out).sum().backward();

  for (bool input_is_parallel : {true, false}) {
    RowParallelLinear layer(in, out, tp, true, input_is_parallel);
    layers_load(layer->weight, layer->shard_spec("weight").slice(W.detach()));
    layers_load(layer->bias, b.detach());
    auto x_full = x_ref.detach().clone().requires_grad_();
    auto x = input_is_parallel ? x_full.detach().chunk(n, -1)[r].clone().requires_grad_() : x_full;
    auto y = layer(x);
    layers_expect_close(y, y_ref.detach(), "row output");
    (y * w_out).sum().backward();
    layers_expect_close(x.grad(), input_is_parallel ? x_ref.grad().chunk(n, -1)[r] : x_ref.grad(), "row input grad");
    layers_expect_close(layer->weight.grad(), layer->shard_spec("weight").slice(W.grad()), "row weight grad");
    layers_expect_close(layer->bias.grad(), b.grad(), "row bias grad (added once)");
  }
}

TEST(TensorParallelLayers, VocabParallelEmbeddingMatchesEmbedding) {
  auto tp = layers_tp();
  const int64_t vocab = 8 * tp.size(), dim = 3;
  auto E = layers_rnd({vocab, dim}, "E").requires_grad_();
  auto ids = torch::randint(vocab, {4, 5}, paratorch::generator_for(17, "ids"), torch::kLong);
  auto y_ref = torch::embedding(E, ids);
  auto w_out = layers_rnd(y_ref.sizes(), "gy");
  (y_ref * w_out).sum().backward();

  VocabParallelEmbedding layer(vocab, dim, tp);
  const auto spec = layer->shard_spec("weight");
  layers_load(layer->weight, spec.slice(E.detach()));
  auto y = layer(ids);
  layers_expect_close(y, y_ref.detach(), "embedding output");
  (y * w_out).sum().backward();
  layers_expect_close(layer->weight.grad(), spec.slice(E.grad()), "embedding grad: owned rows only");
}

// A layer built with no weights loaded starts as its plain counterpart
// would, from the same seed: each rank holds its slice of those weights
// (the layers draw the whole tensor and keep a slice; every rank is seeded
// alike here, as a user seeds them).
TEST(TensorParallelLayers, StartAsThePlainLayerFromTheSameSeed) {
  auto tp = layers_tp();
  const int n = tp.size();
  const int64_t in = 3 * n, out = 6 * n, vocab = 4 * n;
  torch::manual_seed(41);
  torch::nn::Linear plain(in, out);
  torch::manual_seed(41);
  ColumnParallelLinear column(in, out, tp);
  EXPECT_TRUE(torch::equal(column->weight, column->shard_spec("weight").slice(plain->weight))) << "column weight";
  EXPECT_TRUE(torch::equal(column->bias, column->shard_spec("bias").slice(plain->bias))) << "column bias";
  torch::manual_seed(41);
  RowParallelLinear row(in, out, tp);
  EXPECT_TRUE(torch::equal(row->weight, row->shard_spec("weight").slice(plain->weight))) << "row weight";
  EXPECT_TRUE(torch::equal(row->bias, plain->bias)) << "row bias (whole on every rank)";
  torch::manual_seed(41);
  torch::nn::Embedding table(vocab, in);
  torch::manual_seed(41);
  VocabParallelEmbedding embedding(vocab, in, tp);
  EXPECT_TRUE(torch::equal(embedding->weight, embedding->shard_spec("weight").slice(table->weight)))
      << "embedding rows";
}

TEST(TensorParallelLayers, VocabParallelCrossEntropyMatches) {
  auto tp = layers_tp();
  const int n = tp.size(), r = tp.rank();
  const int64_t rows = 6, vocab = 5 * n;
  auto logits_ref = (3 * layers_rnd({rows, vocab}, "z")).requires_grad_();
  auto target = torch::randint(vocab, {rows}, paratorch::generator_for(17, "t"), torch::kLong);
  auto loss_ref = F::cross_entropy(logits_ref, target, F::CrossEntropyFuncOptions().reduction(torch::kNone));
  auto w = layers_rnd({rows}, "w");
  (loss_ref * w).sum().backward();

  auto logits = logits_ref.detach().chunk(n, -1)[r].clone().requires_grad_();
  auto loss = vocab_parallel_cross_entropy(logits, target, tp);
  layers_expect_close(loss, loss_ref.detach(), "per-row loss");
  (loss * w).sum().backward();
  layers_expect_close(logits.grad(), logits_ref.grad().chunk(n, -1)[r], "logit grad");
}

TEST(TensorParallelLayers, IndivisibleSizeNamesValidTp) {
  try {
    require_divisible("[model] n_heads", 6, 4);
    FAIL() << "expected UsageError";
  } catch (const paratorch::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("n_heads = 6 is not divisible by tp = 4; valid tp for it: 1, 2, 3, 6"),
              std::string::npos) << e.what();
  }
}
