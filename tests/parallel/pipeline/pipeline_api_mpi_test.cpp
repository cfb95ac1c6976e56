// tests/parallel/pipeline/pipeline_api_mpi_test.cpp — paratorch::Pipeline
// under mpirun: step() trains a user's Sequential exactly as one process
// does (GPipe, 1F1B, interleaved, split points, partition by time,
// activation checkpointing, tied weights), forward() serves every rank, and
// each bad input is refused with a message naming the option.
#include <gtest/gtest.h>
#include <paratorch/errors.h>
#include <paratorch/layout.h>
#include <paratorch/pipeline.h>
#include <paratorch/tensor_parallel.h>
#include <paratorch/zero.h>
#include <paratorch/verify.h>

#include "mpi_test_env.h"

#include <set>

namespace {

using paratorch::PartitionBy;
using paratorch::PipelineOptions;
using paratorch::PipelineSchedule;

constexpr int64_t kBatch = 8;

// Eight children (four Linear layers, activations between): enough for
// interleaved v=2 on four ranks.
torch::nn::Sequential make_mlp() {
  torch::manual_seed(0);
  return torch::nn::Sequential(torch::nn::Linear(6, 8), torch::nn::Tanh(), torch::nn::Linear(8, 8), torch::nn::Tanh(),
                               torch::nn::Linear(8, 8), torch::nn::Tanh(), torch::nn::Linear(8, 8),
                               torch::nn::Linear(8, 3));
}

paratorch::Batch batch_of(int64_t step) {
  torch::manual_seed(100 + step);
  return {torch::randn({kBatch, 6}), torch::randn({kBatch, 3})};
}

torch::Tensor mse(const torch::Tensor& out, const torch::Tensor& target) { return torch::mse_loss(out, target); }

// One tensor once, even when the module registers it under two names (tied weights).
std::vector<torch::Tensor> distinct(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  std::set<const void*> seen;
  for (const auto& p : params)
    if (seen.insert(p.unsafeGetTensorImpl()).second) out.push_back(p);
  return out;
}

paratorch::Trainee reference(const std::function<torch::nn::Sequential()>& make) {
  auto net = make();
  auto opt = std::make_shared<torch::optim::SGD>(distinct(net->parameters()), 0.1);
  return paratorch::plain_trainee(net.ptr(), opt, [net](const paratorch::Batch& b) mutable {
    return mse(net->forward(b.input), b.target);
  });
}

paratorch::Trainee pipelined(const std::function<torch::nn::Sequential()>& make, PipelineOptions options,
                             std::shared_ptr<paratorch::Pipeline>* keep = nullptr) {
  auto pipe = std::make_shared<paratorch::Pipeline>(make(), test_world().comm(), batch_of(0).input, options);
  if (keep) *keep = pipe;
  auto opt = std::make_shared<torch::optim::SGD>(pipe->parameters(), 0.1);
  paratorch::Trainee t;
  t.step = [pipe, opt](const paratorch::Batch& b) {
    opt->zero_grad();
    const double loss = pipe->step(b.input, b.target, mse);
    opt->step();
    return loss;
  };
  t.full_parameters = [pipe] { return pipe->full_parameters(); };
  return t;
}

void expect_equivalent(PipelineOptions options, const std::function<torch::nn::Sequential()>& make = make_mlp) {
  paratorch::EquivalenceOptions eq;
  eq.steps = 3;
  const auto report = paratorch::check_equivalence(
      test_world().comm(), batch_of, [&] { return reference(make); }, [&] { return pipelined(make, options); }, eq);
  EXPECT_TRUE(report.pass) << report.summary_line("pipeline") << " worst " << report.worst_param;
  EXPECT_GT(report.reference_losses.front(), 0.0);
}

PipelineOptions with(PipelineSchedule schedule, int microbatches, int virtual_stages = 1) {
  PipelineOptions o;
  o.schedule = schedule;
  o.microbatches = microbatches;
  o.virtual_stages = virtual_stages;
  return o;
}

TEST(PipelineApi, GPipeMatchesOneProcess) { expect_equivalent(with(PipelineSchedule::kGPipe, 4)); }
TEST(PipelineApi, OneFOneBMatchesOneProcess) { expect_equivalent(with(PipelineSchedule::kOneFOneB, 4)); }
TEST(PipelineApi, NaiveModelParallelMatchesOneProcess) { expect_equivalent(with(PipelineSchedule::kOneFOneB, 1)); }
TEST(PipelineApi, InterleavedMatchesOneProcess) { expect_equivalent(with(PipelineSchedule::kInterleaved, 4, 2)); }
TEST(PipelineApi, ZeroBubbleH1MatchesOneProcess) { expect_equivalent(with(PipelineSchedule::kZeroBubbleH1, 4)); }
TEST(PipelineApi, ZeroBubbleVMatchesOneProcess) { expect_equivalent(with(PipelineSchedule::kZeroBubbleV, 4)); }

TEST(PipelineApi, ActivationCheckpointingMatchesOneProcess) {
  auto o = with(PipelineSchedule::kOneFOneB, 2);
  o.activation_checkpointing = true;
  expect_equivalent(o);
}

// Named children cut where the user says: {"c"} puts a, b on rank 0.
torch::nn::Sequential make_named() {
  torch::manual_seed(0);
  return torch::nn::Sequential({{"a", torch::nn::Linear(6, 8)}, {"b", torch::nn::Tanh()},
                                {"c", torch::nn::Linear(8, 8)}, {"d", torch::nn::Linear(8, 3)}});
}

TEST(PipelineApi, SplitPointsNamedByChild) {
  auto& world = test_world();
  if (world.size() != 2) GTEST_SKIP() << "one split point is a 2-stage pipeline";
  auto o = with(PipelineSchedule::kGPipe, 2);
  o.partition = PartitionBy::kSplitPoints;
  o.split_points = {"c"};
  paratorch::Pipeline pipe(make_named(), world.comm(), batch_of(0).input, o);
  EXPECT_EQ(pipe.stage_starts(), (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(pipe.local_block_names(), world.rank() == 0 ? (std::vector<std::string>{"a", "b"})
                                                          : (std::vector<std::string>{"c", "d"}));
  const std::string mine = world.rank() == 0 ? "ab" : "cd";
  for (const auto& item : pipe.named_parameters()) EXPECT_NE(mine.find(item.first[0]), std::string::npos) << item.first;
  EXPECT_EQ(pipe.named_parameters().size(), world.rank() == 0 ? 2u : 4u);  // a | c, d: weights and biases
  expect_equivalent(o, make_named);
}

TEST(PipelineApi, PartitionByTimeCutsAlikeOnEveryRank) {
  auto o = with(PipelineSchedule::kOneFOneB, 2);
  o.partition = PartitionBy::kTime;
  std::shared_ptr<paratorch::Pipeline> pipe;
  pipelined(make_mlp, o, &pipe);
  auto mine = torch::tensor(std::vector<int64_t>(pipe->stage_starts().begin(), pipe->stage_starts().end()));
  auto rank0 = mine.clone();
  test_world().comm()->broadcast(rank0, 0);
  EXPECT_TRUE(torch::equal(mine, rank0));
  expect_equivalent(o);
}

// The first Linear's weight reused, transposed, by the last child (an
// embedding tied to the output head): one tensor under two names.
struct TiedHeadImpl : torch::nn::Module {
  explicit TiedHeadImpl(torch::Tensor w) { weight = register_parameter("weight", w); }
  torch::Tensor forward(const torch::Tensor& x) { return torch::matmul(x, weight); }
  torch::Tensor weight;
};
TORCH_MODULE(TiedHead);

torch::nn::Sequential make_tied() {
  torch::manual_seed(0);
  torch::nn::Linear first(3, 8);
  return torch::nn::Sequential({{"embed", first}, {"act", torch::nn::Tanh()}, {"mid", torch::nn::Linear(8, 8)},
                                {"mid2", torch::nn::Linear(8, 8)}, {"head", TiedHead(first->weight)}});
}

paratorch::Batch tied_batch_of(int64_t step) {
  torch::manual_seed(200 + step);
  return {torch::randn({kBatch, 3}), torch::randn({kBatch, 3})};
}

void expect_tied_equivalent(PipelineOptions o, const std::string& what) {
  o.tied = {{"embed.weight", "head.weight"}};
  paratorch::EquivalenceOptions eq;
  eq.steps = 3;
  const auto report = paratorch::check_equivalence(
      test_world().comm(), tied_batch_of, [&] { return reference(make_tied); },
      [&] {
        auto pipe = std::make_shared<paratorch::Pipeline>(make_tied(), test_world().comm(), tied_batch_of(0).input, o);
        auto opt = std::make_shared<torch::optim::SGD>(pipe->parameters(), 0.1);
        return paratorch::Trainee{[pipe, opt](const paratorch::Batch& b) {
                                    opt->zero_grad();
                                    const double loss = pipe->step(b.input, b.target, mse);
                                    opt->step();
                                    return loss;
                                  },
                                  [pipe] { return pipe->full_parameters(); }};
      },
      eq);
  EXPECT_TRUE(report.pass) << report.summary_line(what) << " worst " << report.worst_param;
}

TEST(PipelineApi, TiedWeightsAcrossStagesMatchOneProcess) {
  expect_tied_equivalent(with(PipelineSchedule::kOneFOneB, 2), "tied");
}

// zb-v puts the first and the last stage on rank 0: the tied pair meets
// there, one tensor, and its gradient must still be counted once per use.
TEST(PipelineApi, TiedWeightsInTheVOfZeroBubbleMatchOneProcess) {
  if (test_world().size() != 2) GTEST_SKIP() << "make_tied's 5 children make at most 4 stages (2 ranks in a V)";
  expect_tied_equivalent(with(PipelineSchedule::kZeroBubbleV, 2), "tied zb-v");
}

// clip_grad_norm sums the stages' squares over pp and counts the tied
// pair once: the norm one process measures, and with a clip that binds
// every step (SGD: a clip off by any factor changes the update) the same
// training as torch::nn::utils::clip_grad_norm_ in one process.
constexpr double kClipMaxNorm = 0.05;

// One process, SGD, clipped by torch::nn::utils::clip_grad_norm_ at
// kClipMaxNorm, which must bind on every step.
paratorch::Trainee clipped_reference(const std::function<torch::nn::Sequential()>& make) {
  auto net = make();
  auto params = distinct(net->parameters());
  auto opt = std::make_shared<torch::optim::SGD>(params, 0.1);
  return paratorch::Trainee{[net, opt, params](const paratorch::Batch& b) mutable {
                              opt->zero_grad();
                              auto loss = mse(net->forward(b.input), b.target);
                              loss.backward();
                              EXPECT_GT(torch::nn::utils::clip_grad_norm_(params, kClipMaxNorm), kClipMaxNorm)
                                  << "the clip binds";
                              opt->step();
                              return loss.item<double>();
                            },
                            [net] { return paratorch::named_parameter_copies(*net); }};
}

TEST(PipelineApi, ClipGradNormMatchesOneProcessWithTiedWeights) {
  auto o = with(PipelineSchedule::kOneFOneB, 2);
  o.tied = {{"embed.weight", "head.weight"}};
  {
    auto net = make_tied();
    paratorch::Pipeline pipe(make_tied(), test_world().comm(), tied_batch_of(0).input, o);
    const auto b = tied_batch_of(0);
    mse(net->forward(b.input), b.target).backward();
    pipe.step(b.input, b.target, mse);
    const double want = torch::nn::utils::clip_grad_norm_(distinct(net->parameters()), 1e9);
    EXPECT_NEAR(pipe.clip_grad_norm(1e9), want, 1e-5 * want);
    EXPECT_THROW(pipe.clip_grad_norm(0), paratorch::UsageError);
  }
  paratorch::EquivalenceOptions eq;
  eq.steps = 3;
  auto reference = [] { return clipped_reference(make_tied); };
  auto pipelined = [&o] {
    auto pipe = std::make_shared<paratorch::Pipeline>(make_tied(), test_world().comm(), tied_batch_of(0).input, o);
    auto opt = std::make_shared<torch::optim::SGD>(pipe->parameters(), 0.1);
    return paratorch::Trainee{[pipe, opt](const paratorch::Batch& b) {
                                opt->zero_grad();
                                const double loss = pipe->step(b.input, b.target, mse);
                                pipe->clip_grad_norm(kClipMaxNorm);
                                opt->step();
                                return loss;
                              },
                              [pipe] { return pipe->full_parameters(); }};
  };
  const auto report = paratorch::check_equivalence(test_world().comm(), tied_batch_of, reference, pipelined, eq);
  EXPECT_TRUE(report.pass) << report.summary_line("tied clip") << " worst " << report.worst_param;
}

// Tensor-parallel layers inside the stages (pp = 2 x tp = 2): the clip's
// norm sums the column/row slices over tp and counts the replicated
// LayerNorms and row biases once, so it is the whole model's; after a
// binding clip every rank's gradients measure max_norm together.
struct TpBlockImpl : torch::nn::Module {
  TpBlockImpl() {
    ln = register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({8})));
    mlp = register_module("mlp", torch::nn::Sequential({{"c_fc", torch::nn::Linear(8, 16)},
                                                        {"act", torch::nn::GELU()},
                                                        {"c_proj", torch::nn::Linear(16, 8)}}));
  }
  torch::Tensor forward(const torch::Tensor& x) { return x + mlp->forward(ln(x)); }
  torch::nn::LayerNorm ln{nullptr};
  torch::nn::Sequential mlp{nullptr};
};
TORCH_MODULE(TpBlock);

torch::nn::Sequential make_tp_blocks() {
  torch::manual_seed(0);
  torch::nn::Sequential net;
  for (int i = 0; i < 4; ++i) net->push_back("b" + std::to_string(i), TpBlock());
  return net;
}

paratorch::Batch tp_batch_of(int64_t step) {
  torch::manual_seed(300 + step);
  return {torch::randn({kBatch, 8}), torch::randn({kBatch, 8})};
}

TEST(PipelineApi, ClipGradNormSumsTensorParallelSlicesOnce) {
  if (test_world().size() != 4) GTEST_SKIP() << "pp = 2 x tp = 2 needs 4 ranks";
  namespace tp = paratorch::tensor_parallel;
  paratorch::ProcessGroups groups(test_world().comm(), paratorch::Layout{1, 2, 2}.resolve(4));
  auto reference = make_tp_blocks(), net = make_tp_blocks();
  tp::parallelize(net.ptr(), groups.tp(),
                  {{"*.mlp.c_fc", tp::ParallelStyle::colwise()}, {"*.mlp.c_proj", tp::ParallelStyle::rowwise()}});
  auto o = with(PipelineSchedule::kOneFOneB, 2);
  paratorch::Pipeline pipe(net, groups.pp(), torch::zeros({2, 8}), o);
  torch::manual_seed(7);
  const auto x = torch::randn({4, 8}), y = torch::randn({4, 8});
  mse(reference->forward(x), y).backward();
  pipe.step(x, y, mse);
  const double want = torch::nn::utils::clip_grad_norm_(reference->parameters(), 1e9);
  EXPECT_NEAR(pipe.clip_grad_norm(1e9, groups.tp()), want, 1e-5 * want);
  EXPECT_NEAR(pipe.clip_grad_norm(want / 4, groups.tp()), want, 1e-5 * want);
  EXPECT_NEAR(pipe.clip_grad_norm(1e9, groups.tp()), want / 4, 1e-5 * want) << "clipped alike on every rank";
}

// A pipeline with ZeRO-1 (SGD) inside each stage, clipped at kClipMaxNorm:
// the shards' squares add over dp, the stages' over clip_pp_group, and the
// copies Pipeline::tied_copies() names are left out.
// With `sync_once`, the gradients reduce during each step's last backward
// only (Pipeline::set_gradient_sync); `reductions` counts the flat-buffer
// reductions each step's backwards launched.
paratorch::Trainee zero_in_stages(const paratorch::ProcessGroups& groups,
                                  const std::function<torch::nn::Sequential()>& make, const torch::Tensor& example,
                                  const PipelineOptions& o, bool sync_once = false,
                                  std::shared_ptr<std::vector<int64_t>> reductions = nullptr) {
  auto pipe = std::make_shared<paratorch::Pipeline>(make(), groups.pp(), example, o);
  paratorch::ZeroRedundancyOptimizerOptions zo;
  zo.max_grad_norm = kClipMaxNorm;
  zo.clip_pp_group = groups.pp();
  zo.clip_tied_copies = pipe->tied_copies();
  auto zero = std::make_shared<paratorch::ZeroRedundancyOptimizer>(
      pipe->named_parameters(), groups.dp(),
      [](std::vector<torch::Tensor> shards) { return std::make_unique<torch::optim::SGD>(shards, 0.1); }, zo);
  if (sync_once) pipe->set_gradient_sync([zero](bool last) { zero->set_requires_gradient_sync(last); });
  auto dp = groups.dp();
  return paratorch::Trainee{[pipe, zero, dp, reductions](const paratorch::Batch& b) {
                              zero->zero_grad();
                              const auto mine = paratorch::local_slice(b, dp->rank(), dp->size());
                              const int64_t before = zero->reductions_launched();
                              auto loss = torch::tensor({pipe->step(mine.input, mine.target, mse)}, torch::kDouble);
                              // launched during the pipeline's backwards (step() would reduce what they left)
                              if (reductions) reductions->push_back(zero->reductions_launched() - before);
                              zero->step();
                              dp->all_reduce(loss, paratorch::ReduceOp::kAvg);
                              return loss.item<double>();
                            },
                            [pipe] { return pipe->full_parameters(); }};
}

// dp = 2 x pp = 2: a clip that binds every step trains as one process
// clipping its whole gradient.
TEST(PipelineApi, ZeroInsideStagesClipsByTheWholeModelsNorm) {
  if (test_world().size() != 4) GTEST_SKIP() << "dp = 2 x pp = 2 needs 4 ranks";
  paratorch::ProcessGroups groups(test_world().comm(), paratorch::Layout{2, 2, 1}.resolve(4));
  paratorch::EquivalenceOptions eq;
  eq.steps = 3;
  const auto report = paratorch::check_equivalence(
      test_world().comm(), batch_of, [] { return clipped_reference(make_mlp); },
      [&groups] {
        return zero_in_stages(groups, make_mlp, batch_of(0).input.narrow(0, 0, 2),
                              with(PipelineSchedule::kOneFOneB, 2));
      },
      eq);
  EXPECT_TRUE(report.pass) << report.summary_line("zero in stages, clipped") << " worst " << report.worst_param;
}

// Tied weights (dp = size / 2 x pp = 2): the last stage's copy is a tied
// copy, so the norm counts the weight once, on the first stage.
TEST(PipelineApi, ZeroInsideStagesCountsTiedCopiesOnce) {
  const int n = test_world().size();
  paratorch::ProcessGroups groups(test_world().comm(), paratorch::Layout{n / 2, 2, 1}.resolve(n));
  auto o = with(PipelineSchedule::kOneFOneB, 2);
  o.tied = {{"embed.weight", "head.weight"}};
  const paratorch::Pipeline probe(make_tied(), groups.pp(), tied_batch_of(0).input, o);
  EXPECT_EQ(probe.tied_copies(),
            groups.coords().pp == 1 ? std::vector<std::string>{"head.weight"} : std::vector<std::string>{});
  paratorch::EquivalenceOptions eq;
  eq.steps = 3;
  for (bool sync_once : {false, true}) {  // the tied sum comes after the step's one reduction too
    const auto report = paratorch::check_equivalence(
        test_world().comm(), tied_batch_of, [] { return clipped_reference(make_tied); },
        [&] { return zero_in_stages(groups, make_tied, tied_batch_of(0).input, o, sync_once); }, eq);
    EXPECT_TRUE(report.pass) << report.summary_line(sync_once ? "zero in stages, tied, clipped, synced once"
                                                              : "zero in stages, tied, clipped")
                             << " worst " << report.worst_param;
  }
}

// dp = 2 x pp = 2 with four micro-batches: with Pipeline::set_gradient_sync
// each step reduces its flat buffer once, during the last backward (under
// ZB-V, the last W of the rank's first chunk: the other chunk's gradients,
// accumulated unreduced, go with it), and still trains as one process;
// without it, every micro-batch's backward reduces.
TEST(PipelineApi, ZeroInsideStagesReducesOncePerStepWithGradientSync) {
  if (test_world().size() != 4) GTEST_SKIP() << "dp = 2 x pp = 2 needs 4 ranks";
  paratorch::ProcessGroups groups(test_world().comm(), paratorch::Layout{2, 2, 1}.resolve(4));
  const auto example = batch_of(0).input.narrow(0, 0, 1);
  for (const auto schedule : {PipelineSchedule::kOneFOneB, PipelineSchedule::kZeroBubbleV}) {
    const int m = 4;
    auto once = std::make_shared<std::vector<int64_t>>(), every = std::make_shared<std::vector<int64_t>>();
    paratorch::EquivalenceOptions eq;
    eq.steps = 3;
    const auto report = paratorch::check_equivalence(
        test_world().comm(), batch_of, [] { return clipped_reference(make_mlp); },
        [&] { return zero_in_stages(groups, make_mlp, example, with(schedule, m), /*sync_once=*/true, once); }, eq);
    EXPECT_TRUE(report.pass) << report.summary_line("zero in stages, synced once") << " worst " << report.worst_param;
    auto plain = zero_in_stages(groups, make_mlp, example, with(schedule, m), /*sync_once=*/false, every);
    plain.step(batch_of(0));
    ASSERT_EQ(once->size(), 3u);
    ASSERT_EQ(every->size(), 1u);
    for (int64_t n : *once) EXPECT_EQ(n, 1) << "one flat buffer, reduced once per step";
    const int chunks = schedule == PipelineSchedule::kZeroBubbleV ? 2 : 1;
    // (ZB-V's weight passes may take more than one autograd call each: 12 at m = 4)
    EXPECT_GE(every->front(), chunks * m) << "without the hook, at least once per backward of each chunk";
  }
}

// ZeRO-1 over a tensor-parallel model (dp = 2 x tp = 2) with max_grad_norm:
// each parameter's piece of a shard carries its tp split, so the column and
// row slices add over tp and the LayerNorms and row biases count once; a
// clip that binds every step trains as one process clipping the whole model.
TEST(ZeroWithTensorParallel, BindingClipEqualsOneProcess) {
  if (test_world().size() != 4) GTEST_SKIP() << "dp = 2 x tp = 2 needs 4 ranks";
  namespace tp = paratorch::tensor_parallel;
  paratorch::ProcessGroups groups(test_world().comm(), paratorch::Layout{2, 1, 2}.resolve(4));
  auto reference = [] { return clipped_reference(make_tp_blocks); };
  auto parallel = [&groups] {
    auto net = make_tp_blocks();
    tp::parallelize(net.ptr(), groups.tp(),
                    {{"*.mlp.c_fc", tp::ParallelStyle::colwise()}, {"*.mlp.c_proj", tp::ParallelStyle::rowwise()}});
    paratorch::ZeroRedundancyOptimizerOptions zo;
    zo.bucket_mb = 200.0 / (1024 * 1024);  // several flat buffers, parameters split across shards
    zo.max_grad_norm = kClipMaxNorm;
    zo.clip_tp_group = groups.tp();
    zo.clip_tp_specs = tp::shard_specs(*net);
    auto zero = std::make_shared<paratorch::ZeroRedundancyOptimizer>(
        net.ptr(), groups.dp(),
        [](std::vector<torch::Tensor> shards) { return std::make_unique<torch::optim::SGD>(shards, 0.1); }, zo);
    auto dp = groups.dp();
    auto tp_group = groups.tp();
    return paratorch::Trainee{[net, zero, dp](const paratorch::Batch& b) mutable {
                                zero->zero_grad();
                                const auto mine = paratorch::local_slice(b, dp->rank(), dp->size());
                                auto loss = mse(net->forward(mine.input), mine.target);
                                loss.backward();
                                zero->step();
                                auto mean = torch::tensor({loss.item<double>()}, torch::kDouble);
                                dp->all_reduce(mean, paratorch::ReduceOp::kAvg);
                                return mean.item<double>();
                              },
                              [net, tp_group] { return tp::full_parameters(*net, *tp_group); }};
  };
  paratorch::EquivalenceOptions eq;
  eq.steps = 3;
  const auto report = paratorch::check_equivalence(test_world().comm(), tp_batch_of, reference, parallel, eq);
  EXPECT_TRUE(report.pass) << report.summary_line("zero-1 x tp, clipped") << " worst " << report.worst_param;
}

TEST(PipelineApi, ForwardReturnsTheOutputOnEveryRank) {
  auto net = make_mlp();
  const auto x = batch_of(5).input.narrow(0, 0, 5);  // any batch size
  const auto expected = net->forward(x).detach();
  paratorch::Pipeline pipe(make_mlp(), test_world().comm(), batch_of(0).input, with(PipelineSchedule::kGPipe, 2));
  const auto out = pipe.forward(x);
  ASSERT_EQ(out.sizes(), expected.sizes());
  EXPECT_TRUE(torch::allclose(out, expected, 1e-5, 1e-6));
}

template <typename F>
std::string usage_message(F f) {
  try {
    f();
  } catch (const paratorch::UsageError& e) {
    return e.what();
  }
  return "(no UsageError)";
}

std::string construct(PipelineOptions o, const std::function<torch::nn::Sequential()>& make = make_mlp) {
  return usage_message([&] { paratorch::Pipeline(make(), test_world().comm(), batch_of(0).input, o); });
}

TEST(PipelineApi, TooFewChildrenForTheStages) {
  const int n = test_world().size();
  auto o = with(PipelineSchedule::kInterleaved, 2 * n, 5);  // 8 children < 5n stages
  const std::string msg = construct(o);
  EXPECT_NE(msg.find("the pp group of " + std::to_string(n) + " rank(s) x PipelineOptions::virtual_stages = 5 needs at least " +
                     std::to_string(5 * n) + " blocks (one per stage) but the model has 8"),
            std::string::npos)
      << msg;
}

TEST(PipelineApi, MicrobatchesThatDoNotDivideTheBatch) {
  paratorch::Pipeline pipe(make_mlp(), test_world().comm(), batch_of(0).input, with(PipelineSchedule::kGPipe, 3));
  const auto b = batch_of(0);
  const std::string msg = usage_message([&] { pipe.step(b.input, b.target, mse); });
  EXPECT_NE(msg.find("PipelineOptions::microbatches = 3 does not divide the batch of 8"), std::string::npos) << msg;
}

TEST(PipelineApi, SplitPointNamingAMissingChild) {
  auto o = with(PipelineSchedule::kGPipe, 2);
  o.partition = PartitionBy::kSplitPoints;
  o.split_points = std::vector<std::string>(static_cast<size_t>(test_world().size()) - 1, "e");
  const std::string msg = construct(o, make_named);
  EXPECT_NE(msg.find("PipelineOptions::split_points names \"e\", which is no block of the model; blocks: a, b, c, d"),
            std::string::npos)
      << msg;
}

TEST(PipelineApi, SplitPointsThatDoNotMatchTheGroupSize) {
  auto o = with(PipelineSchedule::kGPipe, 2);
  o.partition = PartitionBy::kSplitPoints;
  o.split_points = {"b", "c", "d"};  // 4 stages
  if (test_world().size() == 4) o.split_points = {"c"};
  const std::string msg = construct(o, make_named);
  EXPECT_NE(msg.find("PipelineOptions::split_points names"), std::string::npos) << msg;
  EXPECT_NE(msg.find("but the pp group of " + std::to_string(test_world().size()) + " rank(s) has " +
                     std::to_string(test_world().size()) + " stages"),
            std::string::npos)
      << msg;
}

TEST(PipelineApi, TiedNamesThatDoNotExist) {
  auto o = with(PipelineSchedule::kGPipe, 2);
  o.tied = {{"0.weight", "7.wieght"}};
  const std::string msg = construct(o);
  EXPECT_NE(msg.find("PipelineOptions::tied names \"7.wieght\", which is no parameter of the model"), std::string::npos)
      << msg;
}

TEST(PipelineApi, ZeroBubbleNeedsAMicrobatchPerRankAndNoCheckpointing) {
  const int n = test_world().size();
  std::string msg = construct(with(PipelineSchedule::kZeroBubbleH1, n - 1));
  EXPECT_NE(msg.find("PipelineOptions::microbatches = " + std::to_string(n - 1) + " is below the pp group's size " +
                     std::to_string(n) + ", which PipelineSchedule::kZeroBubbleH1 needs"),
            std::string::npos)
      << msg;
  auto o = with(PipelineSchedule::kZeroBubbleV, n);
  o.activation_checkpointing = true;
  msg = construct(o);
  EXPECT_NE(msg.find("activation_checkpointing does not combine with PipelineSchedule::kZeroBubbleV yet"),
            std::string::npos)
      << msg;
  msg = construct(with(PipelineSchedule::kZeroBubbleV, n, 3));
  EXPECT_NE(msg.find("places exactly 2 chunks per rank; got PipelineOptions::virtual_stages = 3"), std::string::npos)
      << msg;
}

TEST(PipelineApi, InterleavedMicrobatchesInGroupsOfPp) {
  const int n = test_world().size();
  const std::string msg = construct(with(PipelineSchedule::kInterleaved, n + 1, 2));
  EXPECT_NE(msg.find("PipelineOptions::microbatches = " + std::to_string(n + 1) +
                     " must be a multiple of the pp group's size " + std::to_string(n)),
            std::string::npos)
      << msg;
}

}  // namespace
