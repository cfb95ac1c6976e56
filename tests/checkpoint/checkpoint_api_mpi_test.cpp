// tests/checkpoint/checkpoint_api_mpi_test.cpp — the public save_checkpoint
// with a communicator: rank 0 writes what it holds (the other ranks' tensors
// are not read), every rank returns the same folder and loads the same
// state; a write that fails on rank 0 throws the same error on every rank.
#include <paratorch/checkpoint.h>
#include <paratorch/errors.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "mpi_test_env.h"

namespace {

namespace fs = std::filesystem;

// One folder name for the whole job: rank 0's pid, shared.
std::string job_dir(const std::string& name) {
  auto pid = torch::tensor({test_world().rank() == 0 ? static_cast<int64_t>(::getpid()) : 0}, torch::kLong);
  test_world().comm()->all_reduce(pid, paratorch::ReduceOp::kSum);
  return (fs::temp_directory_path() / ("paratorch_ckpt_mpi_" + name + "_" + std::to_string(pid.item<int64_t>())))
      .string();
}

TEST(CheckpointApiMpi, RankZeroWritesAndEveryRankLoadsItsState) {
  auto comm = test_world().comm();
  torch::manual_seed(5);
  torch::nn::Linear net(4, 3);
  torch::optim::Adam opt(net->parameters(), 1e-2);
  auto x = torch::randn({8, 4});
  opt.zero_grad();
  net->forward(x).pow(2).mean().backward();
  opt.step();
  auto state = paratorch::training_state(*net, opt, 1);
  if (comm->rank() != 0)  // what the other ranks hold must not reach the file
    for (auto& [name, t] : state.model) t = torch::full_like(t, 7.0);
  const std::string root = job_dir("write");
  const std::string folder = paratorch::save_checkpoint(root, state, comm.get());
  EXPECT_EQ(folder, root + "/step-000001");
  EXPECT_TRUE(fs::exists(fs::path(folder) / "index.json"));

  auto back = paratorch::load_checkpoint(root);
  EXPECT_EQ(back.step, 1);
  for (const auto& item : net->named_parameters())
    EXPECT_TRUE(torch::equal(back.model.at(item.key()), item.value())) << item.key() << " is not rank 0's";
  EXPECT_TRUE(back.optimizer.count("weight.exp_avg"));
  comm->barrier();
  if (comm->rank() == 0) fs::remove_all(root);
}

TEST(CheckpointApiMpi, AFailedWriteOnRankZeroThrowsOnEveryRank) {
  auto comm = test_world().comm();
  const std::string root = job_dir("blocked");
  if (comm->rank() == 0) std::ofstream(root) << "a file where the checkpoint folder should go";
  comm->barrier();
  torch::nn::Linear net(2, 2);
  torch::optim::SGD opt(net->parameters(), 0.1);
  std::string message;
  try {
    paratorch::save_checkpoint(root, paratorch::training_state(*net, opt, 3), comm.get());
  } catch (const paratorch::RuntimeFailure& e) {
    message = e.what();
  }
  EXPECT_NE(message.find(root), std::string::npos) << "every rank names the folder it could not write: " << message;
  comm->barrier();
  if (comm->rank() == 0) fs::remove(root);
}

}  // namespace
