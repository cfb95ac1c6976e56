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

}  // namespace

TEST(FullyShardCheckpoint, EachRankSavesItsPiecesAndTheWholeLoadsAnywhere) {
  auto comm = test_world().comm();
  const std::string dir = "/tmp/paratorch-fsdp-slices-np" + std::to_string(comm->size());
  if (comm->rank() == 0) std::filesystem::remove_all(dir);
  auto sync = torch::zeros({1});
  comm->all_reduce(sync, ReduceOp::kSum);  // the folder is gone before anyone writes

  auto reference = zero_test::make_mlp();
  auto ref_opt = adamw_over(reference->parameters());
  auto net = zero_test::make_mlp();
  FullyShardOptions o;
  o.units = {"layers.0", "layers.2", "layers.4"};
  FullyShardedModule sharded = fully_shard(net.ptr(), comm, o);
  auto opt = adamw_over(sharded.parameters());
  for (int64_t s = 0; s < 3; ++s) {
    const auto b = zero_test::batch(s);
    train_step(ref_opt, [&] { return zero_test::loss_of(reference, b); });
    train_step(opt, [&] { return zero_test::loss_of(net, local_slice(b, comm->rank(), comm->size())); });
  }
  const std::string folder =
      save_sharded_checkpoint(dir, 3, sharded.checkpoint_slices(*opt, 3), *comm, "dp=" + std::to_string(comm->size()));

  int shard_files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder))
    shard_files += entry.path().filename().string().rfind("shard-", 0) == 0;
  EXPECT_EQ(shard_files, comm->size()) << "each rank writes its own pieces";

  const TrainingState state = load_checkpoint(dir);  // every rank, whole tensors
  EXPECT_EQ(state.step, 3);
  expect_close(state.model, *reference, "saved parameters");
  // Loaded into a plain module and optimizer, one more step equals the
  // reference's: the moments and step counts came back too.
  auto resumed = zero_test::make_mlp();
  auto resumed_opt = adamw_over(resumed->parameters());
  load_parameters(*resumed, state.model);
  load_optimizer_state(*resumed_opt, *resumed, state.optimizer);
  const auto b = zero_test::batch(3);
  train_step(ref_opt, [&] { return zero_test::loss_of(reference, b); });
  train_step(resumed_opt, [&] { return zero_test::loss_of(resumed, b); });
  std::map<std::string, torch::Tensor> after;
  for (const auto& item : resumed->named_parameters()) after[item.key()] = item.value().detach();
  expect_close(after, *reference, "one step after the resume");

  EXPECT_THROW(save_sharded_checkpoint(dir, 4, {{"x", {2}, 1, torch::zeros({2}), false}}, *comm), UsageError)
      << "a slice past its tensor's end";
}
