// tests/parallel/tensor_parallel/plan_errors_test.cpp — every bad input to
// the public tensor-parallel API is a UsageError whose message names the
// pattern, child or option field to change, and a refused plan leaves the
// module untouched.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "parallel/tensor_parallel/tiny_transformer.h"
#include <paratorch/errors.h>

#include <functional>

using namespace tiny;

namespace {

std::shared_ptr<paratorch::Communicator> errors_group() { return test_world().comm(); }

void expect_usage_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected a UsageError mentioning \"" << parts.front() << "\"";
  } catch (const paratorch::UsageError& e) {
    for (const auto& part : parts)
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << "missing \"" << part << "\" in: " << e.what();
  }
}

void apply_plan(Net& net, const tp::TensorParallelPlan& plan) { tp::parallelize(net.ptr(), errors_group(), plan); }

// A layer sized so that tp = 2 does not divide it.
struct OddImpl : nn::Module {
  OddImpl() {
    register_module("fc", nn::Linear(5, 5));
    register_module("emb", nn::Embedding(5, 4));
  }
};
TORCH_MODULE(Odd);

// The usual libtorch style: the child also lives in a member holder.
struct MemberImpl : nn::Module {
  MemberImpl() { fc = register_module("fc", nn::Linear(4, 4)); }
  nn::Linear fc{nullptr};
};
TORCH_MODULE(Member);

}  // namespace

TEST(TensorParallelApiErrors, PatternMatchingNothingListsNearbyNames) {
  auto net = make_net();
  expect_usage_error([&] { apply_plan(net, {{"h.*.mlp.fc", tp::ParallelStyle::colwise()}}); },
                     {"plan pattern \"h.*.mlp.fc\" matches no child", "nearby child names: h.0.mlp.c_fc"});
  expect_usage_error([&] { apply_plan(net, {{"", tp::ParallelStyle::colwise()}}); }, {"plan entry 0 has an empty pattern"});
}

TEST(TensorParallelApiErrors, MatchedChildOfTheWrongType) {
  auto net = make_net();
  expect_usage_error([&] { apply_plan(net, {{"h.*.ln_1", tp::ParallelStyle::colwise()}}); },
                     {"\"h.0.ln_1\" (colwise) is a torch::nn::LayerNormImpl",
                      "colwise style applies to torch::nn::Linear"});
  expect_usage_error([&] { apply_plan(net, {{"h.0.mlp.c_fc", tp::ParallelStyle::vocab()}}); },
                     {"\"h.0.mlp.c_fc\" (vocab) is a torch::nn::LinearImpl", "applies to torch::nn::Embedding"});
  expect_usage_error([&] { apply_plan(net, {{"wte", tp::ParallelStyle::rowwise()}}); },
                     {"\"wte\" (rowwise) is a torch::nn::EmbeddingImpl"});
}

TEST(TensorParallelApiErrors, ChildMatchedTwice) {
  auto net = make_net();
  expect_usage_error(
      [&] {
        apply_plan(net, {{"h.*.mlp.c_fc", tp::ParallelStyle::colwise()}, {"h.0.mlp.*", tp::ParallelStyle::rowwise()}});
      },
      {"child \"h.0.mlp.c_fc\" matches both plan patterns \"h.*.mlp.c_fc\" and \"h.0.mlp.*\""});
}

TEST(TensorParallelApiErrors, ChildHeldByAMemberIsRefused) {
  Member m;
  expect_usage_error([&] { tp::parallelize(m.ptr(), errors_group(), {{"fc", tp::ParallelStyle::colwise()}}); },
                     {"child \"fc\" is also held outside its parent's registry", "forward_child(*this, \"fc\", x)"});
  EXPECT_TRUE(m->named_children()["fc"]->as<nn::LinearImpl>());
}

TEST(TensorParallelApiErrors, NullGroup) {
  auto net = make_net();
  expect_usage_error([&] { tp::parallelize(net.ptr(), nullptr, megatron_plan()); }, {"tp_group is null"});
}

TEST(TensorParallelApiErrors, RefusedPlanLeavesTheModuleUntouched) {
  auto net = make_net();
  std::map<std::string, const nn::Module*> before;
  for (const auto& m : net->named_modules("", false)) before[m.key()] = m.value().get();
  auto plan = megatron_plan();
  plan.push_back({"h.*.ln_2", tp::ParallelStyle::rowwise()});  // last entry is bad
  expect_usage_error([&] { apply_plan(net, plan); }, {"\"h.0.ln_2\" (rowwise)"});
  for (const auto& m : net->named_modules("", false)) EXPECT_EQ(m.value().get(), before.at(m.key())) << m.key();
}

TEST(TensorParallelApiErrors, SizeTheGroupDoesNotDivide) {
  const int n = errors_group()->size();
  if (n == 1) GTEST_SKIP() << "every size splits over one rank";
  const std::string tp_is = " is not divisible by tp = " + std::to_string(n);
  auto parallelize_odd = [&](const tp::TensorParallelPlan& plan) {
    Odd odd;
    tp::parallelize(odd.ptr(), errors_group(), plan);
  };
  expect_usage_error([&] { parallelize_odd({{"fc", tp::ParallelStyle::colwise()}}); },
                     {"parallelize: \"fc\" (colwise) out_features = 5" + tp_is});
  expect_usage_error([&] { parallelize_odd({{"fc", tp::ParallelStyle::rowwise()}}); },
                     {"parallelize: \"fc\" (rowwise) in_features = 5" + tp_is});
  expect_usage_error([&] { parallelize_odd({{"emb", tp::ParallelStyle::vocab()}}); },
                     {"parallelize: \"emb\" (vocab) num_embeddings = 5" + tp_is});
  expect_usage_error([&] { tp::ColumnParallelLinear(tp::ColumnParallelLinearOptions(4, 5), errors_group()); },
                     {"ColumnParallelLinearOptions::out_features = 5" + tp_is});
  expect_usage_error([&] { tp::RowParallelLinear(tp::RowParallelLinearOptions(5, 4), errors_group()); },
                     {"RowParallelLinearOptions::in_features = 5" + tp_is});
  expect_usage_error(
      [&] { tp::VocabParallelEmbedding(tp::VocabParallelEmbeddingOptions(5, 4), errors_group()); },
      {"VocabParallelEmbeddingOptions::num_embeddings = 5" + tp_is});
}

TEST(TensorParallelApiErrors, FusedPartsAndLoading) {
  expect_usage_error(
      [&] { tp::ColumnParallelLinear(tp::ColumnParallelLinearOptions(4, 8).fused_parts(3), errors_group()); },
      {"ColumnParallelLinearOptions::fused_parts = 3 must be >= 1 and divide out_features = 8"});
  auto net = make_net();
  expect_usage_error([&] { tp::load_full_parameters(*net, {}); },
                     {"load_full_parameters: argument 'full' has no tensor for parameter \"wte.weight\""});
  expect_usage_error([&] { tp::forward_child(*net, "nope", torch::zeros({1})); },
                     {"has no child named \"nope\""});
}

// A style whose fields contradict its kind is refused before any child is
// matched or replaced, naming the field.
TEST(TensorParallelApiErrors, StyleFieldsThatDoNotFitItsKind) {
  auto net = make_net();
  std::map<std::string, const nn::Module*> before;
  for (const auto& m : net->named_modules("", false)) before[m.key()] = m.value().get();
  auto zero_parts = tp::ParallelStyle::colwise(0);
  expect_usage_error([&] { zero_parts.validate(); }, {"ParallelStyle::fused_parts = 0 must be >= 1"});
  auto rowwise_gathering = tp::ParallelStyle::rowwise();
  rowwise_gathering.gather_output = true;
  auto plan = megatron_plan();
  plan.push_back({"h.*.mlp.c_proj", rowwise_gathering});  // after good entries: checked before any swap
  expect_usage_error([&] { apply_plan(net, plan); },
                     {"ParallelStyle::gather_output applies to colwise only; this style is rowwise"});
  auto vocab_fused = tp::ParallelStyle::vocab();
  vocab_fused.fused_parts = 3;
  expect_usage_error([&] { vocab_fused.validate(); }, {"ParallelStyle::fused_parts applies to colwise only"});
  for (const auto& m : net->named_modules("", false)) EXPECT_EQ(m.value().get(), before.at(m.key())) << m.key();
}
