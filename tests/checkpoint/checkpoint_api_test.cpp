// tests/checkpoint/checkpoint_api_test.cpp — the public checkpoint API: a
// save/load in the middle of training continues bit for bit, for every
// supported torch::optim optimizer; slices load into sharded modules; bad
// checkpoints are refused by name.
#include <paratorch/checkpoint.h>
#include <paratorch/errors.h>

#include <gtest/gtest.h>

#include <filesystem>

namespace {

namespace fs = std::filesystem;

std::shared_ptr<torch::nn::Sequential> make_ckpt_net() {
  torch::manual_seed(5);
  return std::make_shared<torch::nn::Sequential>(torch::nn::Linear(4, 6), torch::nn::Tanh(), torch::nn::Linear(6, 2));
}

using CkptOptimFactory = std::function<std::shared_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor>)>;

void train_steps(torch::nn::Sequential& net, torch::optim::Optimizer& opt, int from, int to) {
  for (int s = from; s < to; ++s) {
    torch::manual_seed(50 + s);
    auto x = torch::randn({8, 4}), y = torch::randn({8, 2});
    opt.zero_grad();
    torch::mse_loss(net->forward(x), y).backward();
    opt.step();
  }
}

std::string fresh_ckpt_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("paratorch_ckpt_api_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  return dir.string();
}

void expect_resume_is_exact(const CkptOptimFactory& make_opt, const std::string& name) {
  auto straight = make_ckpt_net();
  auto straight_opt = make_opt((*straight)->parameters());
  train_steps(*straight, *straight_opt, 0, 6);

  auto first = make_ckpt_net();
  auto first_opt = make_opt((*first)->parameters());
  train_steps(*first, *first_opt, 0, 3);
  const std::string root = fresh_ckpt_dir(name);
  const std::string folder = paratorch::save_checkpoint(root, paratorch::training_state(**first, *first_opt, 3));
  EXPECT_TRUE(fs::exists(fs::path(folder) / "index.json")) << "the format paratorch train writes";
  EXPECT_TRUE(fs::exists(fs::path(folder) / "shard-00000-of-00001.safetensors"));

  torch::manual_seed(999);  // a different start: everything must come from the checkpoint
  auto resumed = std::make_shared<torch::nn::Sequential>(torch::nn::Linear(4, 6), torch::nn::Tanh(), torch::nn::Linear(6, 2));
  auto resumed_opt = make_opt((*resumed)->parameters());
  auto state = paratorch::load_checkpoint(root);  // follows latest
  EXPECT_EQ(state.step, 3);
  EXPECT_GT(state.optimizer.size(), 1u);
  paratorch::load_parameters(**resumed, state.model);
  paratorch::load_optimizer_state(*resumed_opt, **resumed, state.optimizer);
  train_steps(*resumed, *resumed_opt, 3, 6);

  auto a = (*straight)->named_parameters(), b = (*resumed)->named_parameters();
  for (auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << name << ": " << p.key();
  fs::remove_all(root);
}

TEST(CheckpointApi, ResumeIsBitExactForEveryOptimizerKind) {
  expect_resume_is_exact([](auto p) { return std::make_shared<torch::optim::SGD>(p, torch::optim::SGDOptions(0.1).momentum(0.9)); }, "sgd");
  expect_resume_is_exact([](auto p) { return std::make_shared<torch::optim::Adam>(p, torch::optim::AdamOptions(1e-2)); }, "adam");
  expect_resume_is_exact([](auto p) { return std::make_shared<torch::optim::AdamW>(p, torch::optim::AdamWOptions(1e-2).amsgrad(true)); }, "adamw");
  expect_resume_is_exact([](auto p) { return std::make_shared<torch::optim::Adagrad>(p, torch::optim::AdagradOptions(1e-2)); }, "adagrad");
  expect_resume_is_exact([](auto p) { return std::make_shared<torch::optim::RMSprop>(p, torch::optim::RMSpropOptions(1e-2).momentum(0.5)); }, "rmsprop");
}

TEST(CheckpointApi, StateIsSavedByParameterName) {
  auto net = make_ckpt_net();
  torch::optim::Adam opt((*net)->parameters(), 1e-2);
  train_steps(*net, opt, 0, 2);
  auto state = paratorch::optimizer_state_by_name(opt, **net);
  ASSERT_TRUE(state.count("0.weight.exp_avg"));
  ASSERT_TRUE(state.count("2.bias.exp_avg_sq"));
  EXPECT_EQ(state.at("0.weight.step").item<int64_t>(), 2);
  EXPECT_EQ(state.at("0.weight.exp_avg").sizes(), (*net)[0]->named_parameters()["weight"].sizes());
}

TEST(CheckpointApi, EachRankTakesItsSliceOfAFullTensor) {
  auto full = make_ckpt_net();
  std::map<std::string, torch::Tensor> tensors;
  for (auto& p : (*full)->named_parameters()) tensors[p.key()] = p.value().detach().clone();
  // Rank 1 of 2 holding half of the first layer's output features.
  torch::nn::Sequential half(torch::nn::Linear(4, 3), torch::nn::Tanh(), torch::nn::Linear(3, 2));
  paratorch::load_parameters(*half, tensors, [](const std::string& name, const torch::Tensor& t) {
    if (name.rfind("0.", 0) == 0) return t.narrow(0, 3, 3);
    if (name == "2.weight") return t.narrow(1, 3, 3);
    return t;
  });
  EXPECT_TRUE(torch::equal(half->named_parameters()["0.weight"], tensors["0.weight"].narrow(0, 3, 3)));
  EXPECT_TRUE(torch::equal(half->named_parameters()["2.bias"], tensors["2.bias"]));
  // Without a `take`, the mismatch is named.
  try {
    paratorch::load_parameters(*half, tensors);
    FAIL() << "a full tensor was loaded into a half-sized parameter";
  } catch (const paratorch::RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("'0.weight' is [3, 4] here and [6, 4]"), std::string::npos) << e.what();
  }
}

TEST(CheckpointApi, MissingParametersAndForeignOptimizersAreRefused) {
  auto net = make_ckpt_net();
  std::map<std::string, torch::Tensor> partial{{"0.weight", torch::zeros({6, 4})}};
  EXPECT_THROW(paratorch::load_parameters(**net, partial), paratorch::RuntimeFailure);
  torch::optim::LBFGS lbfgs((*net)->parameters());
  EXPECT_THROW(paratorch::optimizer_state_by_name(lbfgs, **net), paratorch::UsageError);
  auto other = make_ckpt_net();
  torch::optim::SGD sgd((*other)->parameters(), 0.1);
  EXPECT_THROW(paratorch::optimizer_state_by_name(sgd, **net), paratorch::UsageError);
  EXPECT_THROW(paratorch::load_checkpoint(fresh_ckpt_dir("nothing")), paratorch::RuntimeFailure);
}

TEST(CheckpointApi, ADamagedCheckpointIsNamedInTheLibrarysWords) {
  auto net = make_ckpt_net();
  torch::optim::SGD opt((*net)->parameters(), 0.1);
  const std::string root = fresh_ckpt_dir("damaged");
  const std::string folder = paratorch::save_checkpoint(root, paratorch::training_state(**net, opt, 1));
  fs::resize_file(fs::path(folder) / "shard-00000-of-00001.safetensors", 100);
  std::string message;
  try {
    paratorch::load_checkpoint(root);
  } catch (const paratorch::RuntimeFailure& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("shard-00000-of-00001.safetensors is 100 bytes"), std::string::npos) << message;
  // The library has no command line: what to do with --resume is the CLI's to say.
  EXPECT_EQ(message.find("--resume"), std::string::npos) << message;
  fs::remove_all(root);
}

}  // namespace
