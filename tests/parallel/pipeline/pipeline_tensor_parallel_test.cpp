// tests/parallel/pipeline/pipeline_tensor_parallel_test.cpp — the pipeline engine with
// tp > 1 (pp = 2 × tp = 2, and dp × pp × tp when the world is 8) against a
// whole gpt trained on the whole global batch in one process: per-step
// losses, the PRE-clip global gradient norm (counting a tp shard, a
// replicated LayerNorm or the tied embedding copy twice would fail), the
// reassembled full parameters, the validation loss, and the optimizer state
// as whole tensors — 1e-5 relative (docs/verify.md). Plain SGD without weight
// decay, unclipped except in the case that tests the clip itself, so the
// update is linear in the gradients and a wrong gradient scale (a
// micro-batch 1/m, partial sequence-parallel gradients, the tied embedding's
// two halves) cannot hide behind a clip.
#include <gtest/gtest.h>

#include "data/dataset.h"
#include "models/model.h"
#include "engine_beside_reference.h"
#include "mpi_test_env.h"
#include "train/engine_factory.h"
#include "parallel/grad_clip.h"
#include "optim/optimizer.h"
#include "train/train_step.h"
#include <paratorch/errors.h>

using namespace paratorch;
using namespace paratorch::train;

namespace {

struct PpTpCase {
  std::string schedule;
  int microbatches, virtual_stages;
  bool sequence_parallel;
  double grad_clip = 0;  // 0: measure only
};

std::string label(const PpTpCase& k, int dp) {
  return "gpt dp=" + std::to_string(dp) + " pp=2 tp=2 " + k.schedule + " m=" + std::to_string(k.microbatches) +
         " v=" + std::to_string(k.virtual_stages) + (k.sequence_parallel ? " sequence-parallel" : "") +
         " grad_clip=" + std::to_string(k.grad_clip);
}

Config pptp_config(const PpTpCase& k, int world) {
  Config c;
  c.model.name = "gpt";
  c.model.n_layers = 2; c.model.d_model = 32; c.model.n_heads = 4; c.model.seq_len = 16; c.model.vocab_size = 256;
  c.data.source = "synthetic";
  c.data.global_batch = 8;
  c.parallel.pp = 2;
  c.parallel.tp = 2;
  c.parallel.dp = world / 4;
  c.parallel.schedule = k.schedule;
  c.parallel.microbatches = k.microbatches;
  c.parallel.virtual_stages = k.virtual_stages;
  c.parallel.sequence_parallel = k.sequence_parallel;
  reference::use_linear_sgd(c, k.grad_clip);
  c.validate();
  return c;
}

void run_case(const PpTpCase& k) {
  auto& world = test_world();
  const Config c = pptp_config(k, world.size());
  ProcessGroups groups(world.comm(), Layout{c.parallel.dp, c.parallel.pp, c.parallel.tp});
  auto dataset = data::make_dataset(c.data.source, c.model, 7);
  auto engine = make_engine(c, groups, models::make_model(c.model), *dataset, torch::kCPU);
  auto opt = engine->build_optimizer(c.optim);

  const auto ref = reference::step_beside_reference(*engine, *opt, *dataset, c, 2, k.grad_clip);
  const auto& ref_model = ref.model;
  const auto& ref_opt = ref.optimizer;
  reference::expect_full_parameters_match(*engine, ref);
  auto full = engine->full_parameters();
  std::vector<int64_t> val_ids = {0, 1, 2, 3, 4, 5, 6, 7};
  {
    torch::NoGradGuard no_grad;
    const double ref_val = ref_model->loss(dataset->validation_batch(val_ids)).item<double>();
    EXPECT_NEAR(engine->evaluate(parallel::local_validation_batch(*engine, *dataset, val_ids)).loss, ref_val,
                1e-5 * ref_val);
  }
  // load_full_parameters is the inverse of full_parameters.
  engine->load_full_parameters(full);
  auto again = engine->full_parameters();
  ASSERT_EQ(again.size(), full.size());
  for (const auto& [name, t] : full) EXPECT_TRUE(torch::equal(again[name], t)) << name;
  // The optimizer state checkpoints as whole tensors (the reference's) on
  // every rank, and loads back into this rank's shards.
  auto state = engine->full_optimizer_state(opt->state_tensors());
  const auto ref_state = ref_opt->state_tensors();
  ASSERT_FALSE(ref_state.empty()) << "SGD keeps its step count and momentum";
  for (const auto& [name, t] : ref_state) {
    ASSERT_TRUE(state.count(name)) << name;
    ASSERT_EQ(state[name].sizes(), t.sizes()) << name;
    EXPECT_LT(reference::relative_difference(state[name].to(torch::kDouble), t.to(torch::kDouble)), 1e-5) << name;
  }
  const auto mine = opt->state_tensors();
  opt->load_state_tensors(state);
  const auto loaded = opt->state_tensors();
  ASSERT_EQ(loaded.size(), mine.size());
  for (const auto& [name, t] : loaded) EXPECT_TRUE(torch::equal(t, mine.at(name))) << name;
}

}  // namespace

TEST(PipelineTensorParallel, MatchesWholeModel) {
  if (test_world().size() % 4 != 0) GTEST_SKIP() << "needs pp = 2 x tp = 2 x dp ranks";
  const std::vector<PpTpCase> cases = {
      {"1f1b", 2, 1, false, 0.05},  // the clip itself, applied alike on every stage and tp rank (norms 1.3-1.4)
      {"interleaved", 4, 2, true},  // micro-batches scaled by 1/m, sequence-parallel partial gradients
      {"gpipe", 2, 1, false}};      // unclipped without SP: the tied embedding's halves summed
  for (const auto& k : cases) {
    SCOPED_TRACE(label(k, test_world().size() / 4));
    run_case(k);
  }
}

// mlp has no tensor-parallel layers: pp x tp names the model and what to set.
TEST(PipelineTensorParallel, MlpIsRefusedClearly) {
  if (test_world().size() % 4 != 0) GTEST_SKIP() << "needs pp = 2 x tp = 2 x dp ranks";
  Config c;
  c.model.name = "mlp";
  c.model.n_layers = 2; c.model.d_model = 16; c.model.d_in = 8;
  c.data.source = "synthetic";
  c.data.global_batch = 8;
  c.parallel.pp = 2, c.parallel.tp = 2, c.parallel.dp = test_world().size() / 4;
  ProcessGroups groups(test_world().comm(), Layout{c.parallel.dp, 2, 2});
  auto dataset = data::make_dataset(c.data.source, c.model, 7);
  try {
    make_engine(c, groups, models::make_model(c.model), *dataset, torch::kCPU);
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("model 'mlp' has none (tp > 1 works with gpt and mf)"), std::string::npos)
        << e.what();
  }
}
