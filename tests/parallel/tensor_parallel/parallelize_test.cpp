// tests/parallel/tensor_parallel/parallelize_test.cpp — parallelize() on a
// user-written transformer (tiny_transformer.h): exactly the matched children
// are swapped, in the registry and in Sequential / ModuleList / ModuleDict
// parents; the output and every gradient equal the unsplit module's;
// shard_specs names each parameter's split; whole parameters round-trip;
// the gradient norm over the tp group is the unsplit module's.
// The world is the tp group (np 1 and 2).
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "parallel/tensor_parallel/tiny_transformer.h"
#include <paratorch/errors.h>
#include <paratorch/grad_clip.h>
#include <paratorch/init.h>

#include <algorithm>

using namespace tiny;

namespace {

std::shared_ptr<paratorch::Communicator> tp_group() { return test_world().comm(); }

torch::Tensor token_ids() {
  return torch::randint(kVocab, {2, 4}, paratorch::generator_for(3, "ids"), torch::kLong);
}

std::map<std::string, torch::Tensor> plain_copies(nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

}  // namespace

TEST(TensorParallelApi, ReplacesExactlyTheMatchedChildren) {
  auto net = make_net();
  std::map<std::string, const nn::Module*> before;  // raw: a shared_ptr would count as a holder
  for (const auto& m : net->named_modules("", false)) before[m.key()] = m.value().get();

  const auto replaced = tp::parallelize(net.ptr(), tp_group(), megatron_plan());
  const std::vector<std::string> expected{"wte",          "h.0.attn.c_attn", "h.0.attn.c_proj", "h.0.mlp.c_fc",
                                          "h.0.mlp.c_proj", "h.1.attn.c_attn", "h.1.attn.c_proj", "h.1.mlp.c_fc",
                                          "h.1.mlp.c_proj"};
  EXPECT_EQ(replaced, expected);
  size_t after = 0;
  for (const auto& m : net->named_modules("", false)) {
    ++after;
    const bool swapped = std::count(expected.begin(), expected.end(), m.key()) > 0;
    EXPECT_EQ(m.value().get() != before.at(m.key()), swapped) << m.key();
    const std::string& leaf = m.key().substr(m.key().rfind('.') + 1);
    if (leaf == "c_attn" || leaf == "c_fc")
      EXPECT_TRUE(m.value()->as<tp::ColumnParallelLinearImpl>()) << m.key() << " is " << m.value()->name();
    if (leaf == "c_proj")
      EXPECT_TRUE(m.value()->as<tp::RowParallelLinearImpl>()) << m.key() << " is " << m.value()->name();
  }
  EXPECT_EQ(after, before.size());
  EXPECT_TRUE(net->named_children()["wte"]->as<tp::VocabParallelEmbeddingImpl>());
}

TEST(TensorParallelApi, OutputAndGradientsEqualTheUnsplitModule) {
  auto reference = make_net(), net = make_net();
  tp::parallelize(net.ptr(), tp_group(), megatron_plan());
  const auto ids = token_ids();
  const auto w = torch::randn({2, 4, kDim}, paratorch::generator_for(3, "w"));
  auto y_ref = reference(ids), y = net(ids);
  EXPECT_TRUE(torch::allclose(y, y_ref, 1e-5, 1e-6)) << "max diff " << (y - y_ref).abs().max().item<double>();
  (y_ref * w).sum().backward();
  (y * w).sum().backward();
  const auto specs = tp::shard_specs(*net);
  auto ref_params = reference->named_parameters();
  for (const auto& p : net->named_parameters()) {
    // Each rank's gradient is its slice of the whole model's gradient.
    auto want = specs.at(p.key()).slice(ref_params[p.key()].grad());
    EXPECT_TRUE(torch::allclose(p.value().grad(), want, 1e-4, 1e-6))
        << p.key() << ": max diff " << (p.value().grad() - want).abs().max().item<double>();
  }
}

// The norm over the tp group is the unsplit module's: slices summed,
// replicated parameters (LayerNorms, row-parallel biases) counted once; a
// clip scales every slice as one process scales the whole gradient.
TEST(TensorParallelApi, ClipGradNormIsTheUnsplitModules) {
  auto reference = make_net(), net = make_net();
  tp::parallelize(net.ptr(), tp_group(), megatron_plan());
  const auto ids = token_ids();
  const auto w = torch::randn({2, 4, kDim}, paratorch::generator_for(3, "w"));
  (reference(ids) * w).sum().backward();
  (net(ids) * w).sum().backward();
  const paratorch::GradNormGroups groups{nullptr, tp_group(), nullptr};
  const double want = paratorch::grad_norm(*reference);
  EXPECT_NEAR(paratorch::grad_norm(*net, groups), want, 1e-5 * want);
  const double max_norm = want / 3;
  EXPECT_NEAR(paratorch::clip_grad_norm(*net, max_norm, groups), want, 1e-5 * want);
  torch::nn::utils::clip_grad_norm_(reference->parameters(), max_norm);
  const auto specs = tp::shard_specs(*net);
  auto ref_params = reference->named_parameters();
  for (const auto& p : net->named_parameters()) {
    auto clipped = specs.at(p.key()).slice(ref_params[p.key()].grad());
    EXPECT_TRUE(torch::allclose(p.value().grad(), clipped, 1e-4, 1e-6)) << p.key();
  }
  EXPECT_NEAR(paratorch::grad_norm(*net, groups), max_norm, 1e-4 * max_norm);
  if (tp_group()->size() > 1)  // a list cannot say which parameters are tp slices
    EXPECT_THROW(paratorch::grad_norm(net->parameters(), groups), paratorch::UsageError);
}

TEST(TensorParallelApi, FullParametersAreTheOriginalWeights) {
  auto reference = make_net(), net = make_net();
  tp::parallelize(net.ptr(), tp_group(), megatron_plan());
  const auto full = tp::full_parameters(*net, *tp_group());
  const auto want = plain_copies(*reference);
  ASSERT_EQ(full.size(), want.size());
  for (const auto& [name, t] : want) EXPECT_TRUE(torch::equal(full.at(name), t)) << name;

  // And back: other weights loaded by full name give the reference's output.
  torch::manual_seed(99);
  Net other;
  tp::parallelize(other.ptr(), tp_group(), megatron_plan());
  tp::load_full_parameters(*other, full);
  EXPECT_TRUE(torch::allclose(other(token_ids()), reference(token_ids()), 1e-5, 1e-6));
}

TEST(TensorParallelApi, ShardSpecsNameEverySplit) {
  auto net = make_net();
  const auto names = plain_copies(*net);
  tp::parallelize(net.ptr(), tp_group(), megatron_plan());
  const auto specs = tp::shard_specs(*net);
  const int n = tp_group()->size(), r = tp_group()->rank();
  ASSERT_EQ(specs.size(), names.size());
  for (const auto& [name, t] : names) EXPECT_EQ(specs.count(name), 1u) << name;
  auto expect_spec = [&](const std::string& name, int dim, int parts) {
    const auto& s = specs.at(name);
    EXPECT_EQ(s.dim, dim) << name;
    EXPECT_EQ(s.parts, parts) << name;
    if (dim >= 0) EXPECT_EQ(s.size, n) << name;
    if (dim >= 0) EXPECT_EQ(s.rank, r) << name;
  };
  expect_spec("wte.weight", 0, 1);
  expect_spec("h.0.attn.c_attn.weight", 0, 3);
  expect_spec("h.0.attn.c_attn.bias", 0, 3);
  expect_spec("h.1.attn.c_proj.weight", 1, 1);
  expect_spec("h.1.attn.c_proj.bias", -1, 1);
  expect_spec("h.0.mlp.c_fc.weight", 0, 1);
  expect_spec("h.0.mlp.c_proj.weight", 1, 1);
  expect_spec("h.0.ln_1.weight", -1, 1);
  auto params = net->named_parameters();
  EXPECT_EQ(params["h.0.mlp.c_fc.weight"].sizes(), torch::IntArrayRef({4 * kDim / n, kDim}));
  EXPECT_EQ(params["h.0.mlp.c_proj.weight"].sizes(), torch::IntArrayRef({kDim, 4 * kDim / n}));
  EXPECT_EQ(params["wte.weight"].sizes(), torch::IntArrayRef({kVocab / n, kDim}));
}

namespace {
struct ContainersImpl : nn::Module {
  ContainersImpl() {
    torch::manual_seed(5);
    list = register_module("list", nn::ModuleList(nn::Linear(4, 6)));
    dict = register_module("dict", nn::ModuleDict(std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>{
                                               {"proj", std::make_shared<nn::LinearImpl>(4, 6)}}));
  }
  nn::ModuleList list{nullptr};
  nn::ModuleDict dict{nullptr};
};
TORCH_MODULE(Containers);
}  // namespace

TEST(TensorParallelApi, ContainersSeeTheSwap) {
  Containers reference, net;
  tp::parallelize(net.ptr(), tp_group(),
                  {{"list.0", tp::ParallelStyle::colwise(1, /*gather_output=*/true)},
                   {"dict.proj", tp::ParallelStyle::colwise(1, /*gather_output=*/true)}});
  auto* in_list = net->list->ptr(0)->as<tp::ColumnParallelLinearImpl>();
  auto* in_dict = net->dict["proj"]->as<tp::ColumnParallelLinearImpl>();
  ASSERT_TRUE(in_list) << "ModuleList still holds " << net->list->ptr(0)->name();
  ASSERT_TRUE(in_dict) << "ModuleDict still holds " << net->dict["proj"]->name();
  const auto x = torch::randn({3, 4}, paratorch::generator_for(3, "x"));
  EXPECT_TRUE(torch::allclose(in_list->forward(x), reference->list->ptr<nn::LinearImpl>(0)->forward(x), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(in_dict->forward(x), reference->dict["proj"]->as<nn::LinearImpl>()->forward(x), 1e-5,
                              1e-6));
}

// Shards collected by name elsewhere (a pipeline stage holds only some of
// them) gather to exactly those whole tensors, given the module's specs.
TEST(TensorParallelApi, FullParametersOfNamedShardsAreTheOriginalWeights) {
  auto reference = make_net(), net = make_net();
  tp::parallelize(net.ptr(), tp_group(), megatron_plan());
  const auto specs = tp::shard_specs(*net);
  std::map<std::string, torch::Tensor> stage;  // every other parameter, as one stage of two would hold
  bool take = true;
  for (const auto& p : net->named_parameters()) {
    if (take) stage[p.key()] = p.value();
    take = !take;
  }
  const auto full = tp::full_parameters(stage, specs, *tp_group());
  const auto want = plain_copies(*reference);
  ASSERT_EQ(full.size(), stage.size());
  for (const auto& [name, t] : full) EXPECT_TRUE(torch::equal(t, want.at(name))) << name;

  stage["no.such.weight"] = torch::zeros({2});
  try {
    tp::full_parameters(stage, specs, *tp_group());
    FAIL() << "a name without a ShardSpec was accepted";
  } catch (const paratorch::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("no.such.weight"), std::string::npos) << e.what();
  }
}
