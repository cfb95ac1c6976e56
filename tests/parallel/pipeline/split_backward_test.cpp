// tests/parallel/pipeline/split_backward_test.cpp — a backward split into I and W
// (parallel/pipeline/split_backward.h) leaves exactly the gradients one
// backward leaves: the input's from I, the parameters' from W (none from I),
// for a chain of layers, attention with split q/k/v, a scalar loss, the
// first stage (no input gradient: split at its bottom nodes) and
// micro-batches accumulated out of order; W does not run the input path again; a weight used twice falls back
// to an unsplit W with the same gradients.
#include "parallel/pipeline/split_backward.h"

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <functional>

namespace paratorch::pipeline {
namespace {

// Identity whose backward counts its calls: marks the input path.
int g_path_backwards = 0;
struct CountingIdentity : torch::autograd::Function<CountingIdentity> {
  static torch::Tensor forward(torch::autograd::AutogradContext*, const torch::Tensor& x) { return x.clone(); }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*, torch::autograd::variable_list g) {
    ++g_path_backwards;
    return {g[0]};
  }
};

struct Net : torch::nn::Module {
  torch::nn::Linear a{nullptr}, qkv{nullptr}, proj{nullptr}, out{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  bool reuse = false;  // apply `a` twice: a weight two intermediates share
  Net() {
    a = register_module("a", torch::nn::Linear(8, 8));
    qkv = register_module("qkv", torch::nn::Linear(8, 24));
    proj = register_module("proj", torch::nn::Linear(8, 8));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({8})));
    out = register_module("out", torch::nn::Linear(8, 4));
  }
  torch::Tensor forward(torch::Tensor x) {  // x: [batch, tokens, 8]
    x = torch::gelu(a(x));
    if (reuse) x = a(x);
    x = CountingIdentity::apply(x);
    auto parts = qkv(x).split(8, -1);
    auto att = torch::softmax(torch::matmul(parts[0], parts[1].transpose(1, 2)) / std::sqrt(8.0), -1);
    x = x + proj(torch::matmul(att, parts[2]));
    return out(norm(x));
  }
};

std::vector<torch::Tensor> grads_of(Net& net) {
  std::vector<torch::Tensor> out;
  for (auto& p : net.parameters()) out.push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  return out;
}

void zero(Net& net) {
  for (auto& p : net.parameters()) p.mutable_grad() = torch::Tensor();
}

void expect_same(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i].defined() && b[i].defined()) << what << " parameter " << i;
    EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-6, 1e-7)) << what << " parameter " << i;
  }
}

struct Fixture {
  std::shared_ptr<Net> net = std::make_shared<Net>();
  torch::Tensor x0 = torch::randn({2, 5, 8}), x1 = torch::randn({2, 5, 8}), g0 = torch::randn({2, 5, 4}),
                g1 = torch::randn({2, 5, 4});
  torch::Tensor leaf(const torch::Tensor& x) { return x.clone().requires_grad_(true); }
  // One whole backward of x0: the input's gradient and the parameters',
  // then the parameters' gradients cleared for the split run.
  std::pair<torch::Tensor, std::vector<torch::Tensor>> whole_backward() {
    auto x = leaf(x0);
    net->forward(x).backward(g0);
    auto out = std::make_pair(x.grad().clone(), grads_of(*net));
    zero(*net);
    return out;
  }
};

TEST(SplitBackward, InputPassGivesTheInputGradientAndNoParameterGradient) {
  Fixture f;
  const auto [want_input, want] = f.whole_backward();

  auto xs = f.leaf(f.x0);
  SplitBackward split;
  g_path_backwards = 0;
  const torch::Tensor got_input = split.input_pass(f.net->forward(xs), f.g0, xs);
  EXPECT_EQ(g_path_backwards, 1);
  EXPECT_TRUE(split.split());
  EXPECT_GE(split.intermediates(), 4u);  // a, qkv, proj, norm, out (at least)
  EXPECT_TRUE(torch::equal(got_input, want_input));
  for (auto& p : f.net->parameters()) EXPECT_FALSE(p.grad().defined()) << "I must leave parameters alone";
  split.weight_pass();
  EXPECT_EQ(g_path_backwards, 1) << "W ran the input path again";
  expect_same(grads_of(*f.net), want, "W");
}

TEST(SplitBackward, MicroBatchesAccumulateAsBackwardsDoInAnyOrder) {
  Fixture f;
  for (const auto* x : {&f.x0, &f.x1}) {
    auto leaf = f.leaf(*x);
    f.net->forward(leaf).backward(x == &f.x0 ? f.g0 : f.g1);
  }
  const auto want = grads_of(*f.net);
  zero(*f.net);
  auto a = f.leaf(f.x0), b = f.leaf(f.x1);
  SplitBackward first, second;
  auto ya = f.net->forward(a), yb = f.net->forward(b);
  first.input_pass(ya, f.g0, a);
  second.input_pass(yb, f.g1, b);
  second.weight_pass();  // W's in another order than I's (zb-v does that)
  first.weight_pass();
  expect_same(grads_of(*f.net), want, "two micro-batches");
}

TEST(SplitBackward, ScalarLossSeedsOne) {
  Fixture f;
  auto x = f.leaf(f.x0);
  f.net->forward(x).pow(2).mean().backward();
  const auto want_input = x.grad().clone();
  const auto want = grads_of(*f.net);
  zero(*f.net);
  auto xs = f.leaf(f.x0);
  SplitBackward split;
  EXPECT_TRUE(torch::equal(split.input_pass(f.net->forward(xs).pow(2).mean(), torch::Tensor(), xs), want_input));
  split.weight_pass();
  expect_same(grads_of(*f.net), want, "scalar loss");
}

// The first stage: its input (token ids, data) needs no gradient, so I
// runs the activation path down to the first layer's node and W the rest.
TEST(SplitBackward, FirstStageSplitsAtItsBottomNodes) {
  Fixture f;
  f.net->forward(f.x0).backward(f.g0);
  const auto want = grads_of(*f.net);
  zero(*f.net);
  SplitBackward split;
  g_path_backwards = 0;
  EXPECT_FALSE(split.input_pass(f.net->forward(f.x0), f.g0, f.x0).defined());
  EXPECT_TRUE(split.split());
  EXPECT_EQ(g_path_backwards, 1) << "I runs the activation path";
  for (auto& p : f.net->parameters()) EXPECT_FALSE(p.grad().defined()) << "I must leave parameters alone";
  split.weight_pass();
  EXPECT_EQ(g_path_backwards, 1) << "W ran the activation path again";
  expect_same(grads_of(*f.net), want, "first stage");
}

// One chain to one weight has no bottom: W is the whole backward.
TEST(SplitBackward, AStageOfOneChainRunsWholeInW) {
  auto w = torch::randn({3}, torch::requires_grad());
  const auto x = torch::randn({2, 3});
  SplitBackward split;
  EXPECT_FALSE(split.input_pass((x * w).sum(), torch::Tensor(), x).defined());
  EXPECT_FALSE(split.split());
  EXPECT_FALSE(w.grad().defined());
  split.weight_pass();
  EXPECT_TRUE(torch::allclose(w.grad(), x.sum(0)));
}

TEST(SplitBackward, AWeightUsedTwiceFallsBackToAWholeWeightPass) {
  Fixture f;
  f.net->reuse = true;
  const auto [want_input, want] = f.whole_backward();
  auto xs = f.leaf(f.x0);
  SplitBackward split;
  EXPECT_TRUE(torch::equal(split.input_pass(f.net->forward(xs), f.g0, xs), want_input));
  EXPECT_FALSE(split.split());
  for (auto& p : f.net->parameters()) EXPECT_FALSE(p.grad().defined());
  split.weight_pass();
  expect_same(grads_of(*f.net), want, "shared weight");  // counted once, not twice
}

TEST(SplitBackward, WeightPassWithoutInputPassIsAnError) {
  SplitBackward split;
  EXPECT_THROW(split.weight_pass(), std::exception);
}

}  // namespace
}  // namespace paratorch::pipeline
