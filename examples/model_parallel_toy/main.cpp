// examples/model_parallel_toy/main.cpp — PyTorch's model-parallel ToyModel,
// with the two halves on two ranks instead of two GPUs of one process.
//
// The PyTorch original (tutorial "Single-Machine Model Parallel Best Practices"):
//   class ToyModel(nn.Module):
//       def __init__(self):
//           self.net1 = torch.nn.Linear(10, 10).to('cuda:0')
//           self.relu = torch.nn.ReLU()
//           self.net2 = torch.nn.Linear(10, 5).to('cuda:1')
//       def forward(self, x):
//           x = self.relu(self.net1(x.to('cuda:0')))
//           return self.net2(x.to('cuda:1'))
//   optimizer = optim.SGD(model.parameters(), lr=0.001)
//   optimizer.zero_grad(); loss_fn(model(x), y.to('cuda:1')).backward(); optimizer.step()
//
// Here `net1` (with its ReLU) runs on rank 0 and `net2` on rank 1: a
// paratorch::Pipeline with one micro-batch (naive model parallelism). The
// run is checked against the same ToyModel trained in one process.
// Run it on 2 ranks:  mpirun -np 2 ./model_parallel_toy
#include <paratorch/pipeline.h>
#include <paratorch/verify.h>
#include <paratorch/world.h>

#include <cstdio>

struct ToyModelImpl : torch::nn::Module {
  ToyModelImpl() {
    net1 = register_module("net1", torch::nn::Linear(10, 10));
    net2 = register_module("net2", torch::nn::Linear(10, 5));
  }
  torch::Tensor forward(const torch::Tensor& x) { return net2(torch::relu(net1(x))); }
  torch::nn::Linear net1{nullptr}, net2{nullptr};
};
TORCH_MODULE(ToyModel);

// Same seed, same initial weights: every rank and the reference start alike.
ToyModel make_model() {
  torch::manual_seed(0);
  return ToyModel();
}

torch::Tensor loss_fn(const torch::Tensor& output, const torch::Tensor& target) {
  return torch::mse_loss(output, target);
}

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  auto batches = [](int64_t step) {  // the same global batch on every rank
    torch::manual_seed(100 + step);
    return paratorch::Batch{torch::randn({20, 10}), torch::randn({20, 5})};
  };

  auto reference = [] {
    auto model = make_model();
    auto opt = std::make_shared<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(0.05));
    return paratorch::plain_trainee(model.ptr(), opt, [model](const paratorch::Batch& b) mutable {
      return loss_fn(model->forward(b.input), b.target);
    });
  };

  auto model_parallel = [&] {
    auto model = make_model();
    auto net1 = model->net1;
    // The model as two named blocks; net1's block also applies the ReLU.
    std::vector<paratorch::PipelineBlock> blocks = {
        {"net1", net1.ptr(), [net1](const torch::Tensor& x) mutable { return torch::relu(net1(x)); }},
        {"net2", torch::nn::AnyModule(model->net2)}};
    paratorch::PipelineOptions options;
    options.microbatches = 1;  // naive model parallelism
    options.partition = paratorch::PartitionBy::kSplitPoints;
    options.split_points = {"net2"};  // net2 starts the second stage (rank 1)
    auto pipe = std::make_shared<paratorch::Pipeline>(blocks, world.comm(), batches(0).input, options);
    if (world.rank() == 0) std::printf("model_parallel_toy: %s\n", pipe->describe().c_str());
    auto opt = std::make_shared<torch::optim::SGD>(pipe->parameters(), torch::optim::SGDOptions(0.05));
    paratorch::Trainee t;
    t.step = [pipe, opt](const paratorch::Batch& b) {
      opt->zero_grad();
      const double loss = pipe->step(b.input, b.target, loss_fn);  // this rank's grads are set
      opt->step();
      return loss;
    };
    t.full_parameters = [pipe] { return pipe->full_parameters(); };
    return t;
  };

  paratorch::EquivalenceOptions check;
  check.steps = 10;
  const auto report = paratorch::check_equivalence(world.comm(), batches, reference, model_parallel, check);
  if (world.rank() == 0) std::printf("%s\n", report.summary_line("model_parallel_toy").c_str());
  return report.pass ? 0 : 1;
}
