// tests/parallel/zero/fully_shard_checkpoint_mpi_test.cpp — a fully sharded
// model saves its own pieces (FullyShardedModule::checkpoint_slices and
// save_sharded_checkpoint: no gather, one shard file per rank) and the
// checkpoint loads whole into a plain module and optimizer that then train
// on exactly as one process that never stopped.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "zero_test_models.h"
#include <paratorch/checkpoint.h>
#include <paratorch/zero.h>

#include <filesystem>

using namespace paratorch;

namespace {

std::shared_ptr<torch::optim::AdamW> adamw_over(const std::vector<torch::Tensor>& params) {
  return std::make_shared<torch::optim::AdamW>(params, torch::optim::AdamWOptions(0.05).weight_decay(0.1));
}

void train_step(const std::shared_ptr<torch::optim::Optimizer>& opt, const std::function<torch::Tensor()>& loss) {
  opt->zero_grad();
  loss().backward();
  opt->step();
}

void expect_close(const std::map<std::string, torch::Tensor>& got, torch::nn::Module& want, const std::string& what) {
  for (const auto& item : want.named_parameters()) {
    ASSERT_TRUE(got.count(item.key())) << what << ": no " << item.key();
    const double scale = item.value().norm().item<double>();
    EXPECT_LT((got.at(item.key()) - item.value()).norm().item<double>(), 1e-5 * scale) << what << ": " << item.key();
  }
}

// One model of the test: how to build it, its loss, its batches and units.
struct Case {
  std::string label;
  std::function<std::shared_ptr<torch::nn::Module>()> make;
  std::function<torch::Tensor(torch::nn::Module&, const Batch&)> loss;
  std::function<Batch(int64_t)> batch;
  std::vector<std::string> units;
};

// Trains 3 steps fully sharded and in one process, saves each rank's slices,
// loads them whole on every rank, and takes one more step from them.
void expect_resumes_from_slices(const Case& c) {
  SCOPED_TRACE(c.label);
  auto comm = test_world().comm();
  const std::string dir = "/tmp/paratorch-fsdp-slices-" + c.label + "-np" + std::to_string(comm->size());
  if (comm->rank() == 0) std::filesystem::remove_all(dir);
  auto sync = torch::zeros({1});
  comm->all_reduce(sync, ReduceOp::kSum);  // the folder is gone before anyone writes

  auto reference = c.make();
  auto ref_opt = adamw_over(zero_test::unique_parameters(*reference));
  auto net = c.make();
  FullyShardOptions o;
  o.units = c.units;
  FullyShardedModule sharded = fully_shard(net, comm, o);
  auto opt = adamw_over(sharded.parameters());
  for (int64_t s = 0; s < 3; ++s) {
    const auto b = c.batch(s);
    train_step(ref_opt, [&] { return c.loss(*reference, b); });
    train_step(opt, [&] { return c.loss(*net, local_slice(b, comm->rank(), comm->size())); });
  }
  const std::string folder = save_sharded_checkpoint(dir, 3, sharded.checkpoint_slices(*opt, 3), *comm);
  int shard_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder))
    shard_files += entry.path().filename().string().rfind("shard-", 0) == 0;
  EXPECT_EQ(shard_files, comm->size()) << "each rank writes its own pieces";

  const TrainingState state = load_checkpoint(dir);  // every rank, whole tensors
  EXPECT_EQ(state.step, 3);
  expect_close(state.model, *reference, "saved parameters");
  // Loaded into a plain module and optimizer, one more step equals the
  // reference's: the moments and step counts came back too.
  auto resumed = c.make();
  auto resumed_opt = adamw_over(zero_test::unique_parameters(*resumed));
  load_parameters(*resumed, state.model);
  load_optimizer_state(*resumed_opt, *resumed, state.optimizer);
  const auto b = c.batch(3);
  train_step(ref_opt, [&] { return c.loss(*reference, b); });
  train_step(resumed_opt, [&] { return c.loss(*resumed, b); });
  std::map<std::string, torch::Tensor> after;
  for (const auto& item : resumed->named_parameters()) after[item.key()] = item.value().detach();
  expect_close(after, *reference, "one step after the resume");
}

}  // namespace

// The mlp (parameters straddling the shards), and a weight tied across two
// units, whose pieces and state come under both names.
TEST(FullyShardCheckpoint, EachRankSavesItsPiecesAndTheWholeLoadsAnywhere) {
  expect_resumes_from_slices({"mlp",
                              [] { return zero_test::make_mlp().ptr(); },
                              [](torch::nn::Module& m, const Batch& b) {
                                return torch::mse_loss(m.as<zero_test::MlpImpl>()->forward(b.input), b.target);
                              },
                              zero_test::batch,
                              {"layers.0", "layers.2", "layers.4"}});
  expect_resumes_from_slices({"tied",
                              [] { return zero_test::make_tied().ptr(); },
                              [](torch::nn::Module& m, const Batch& b) {
                                return torch::mse_loss(m.as<torch::nn::SequentialImpl>()->forward(b.input), b.target);
                              },
                              zero_test::tied_batch,
                              {}});
  EXPECT_THROW(save_sharded_checkpoint("/tmp/paratorch-fsdp-slices-bad", 4, {{"x", {2}, 1, torch::zeros({2}), false}},
                                       *test_world().comm()),
               UsageError)
      << "a slice past its tensor's end";
}
