// examples/pipeline_cnn/main.cpp — PyTorch's pipelined ResNet, small, in C++:
// a Sequential cut into `seq1` (rank 0) and `seq2` (rank 1), each batch
// split into micro-batches of `split_size` that flow through the stages.
//
// The PyTorch original (tutorial "Single-Machine Model Parallel Best Practices"):
//   class PipelineParallelResNet50(ModelParallelResNet50):
//       def __init__(self, split_size=20):
//           self.seq1 = nn.Sequential(conv1, bn1, relu, maxpool, layer1, layer2).to('cuda:0')
//           self.seq2 = nn.Sequential(layer3, layer4, avgpool).to('cuda:1')
//           self.fc.to('cuda:1')
//       def forward(self, x):
//           splits = iter(x.split(self.split_size, dim=0))
//           ...  # run seq1 on the next split while seq2 works on the previous one
//
// Here the same model shape — a stem and residual blocks in `seq1`, more
// residual blocks, pooling and the classifier in `seq2` — runs as a
// paratorch::Pipeline with the 1F1B schedule, the cut chosen by measured
// time. The result is checked against the same CNN trained in one process.
// (No BatchNorm: it would normalize each micro-batch by its own statistics,
// which one process on the whole batch does not; GroupNorm is per sample.)
// Run it on 2 ranks:  mpirun -np 2 ./pipeline_cnn
#include <paratorch/pipeline.h>
#include <paratorch/verify.h>
#include <paratorch/world.h>

#include <cstdio>

// x + conv(relu(conv(x))), then ReLU: He et al. (2016)'s basic block.
struct ResidualBlockImpl : torch::nn::Module {
  explicit ResidualBlockImpl(int64_t channels) {
    auto conv = [&](const char* name) {
      return register_module(name, torch::nn::Conv2d(torch::nn::Conv2dOptions(channels, channels, 3).padding(1)));
    };
    conv1 = conv("conv1");
    conv2 = conv("conv2");
    norm = register_module("norm", torch::nn::GroupNorm(2, channels));
  }
  torch::Tensor forward(const torch::Tensor& x) { return torch::relu(x + norm(conv2(torch::relu(conv1(x))))); }
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::GroupNorm norm{nullptr};
};
TORCH_MODULE(ResidualBlock);

// A Sequential that can be a child of a Sequential: libtorch's own
// forward is a template, which AnyModule cannot hold (torchvision's
// mnasnet.cpp does the same).
struct StageImpl : torch::nn::SequentialImpl {
  using SequentialImpl::SequentialImpl;
  torch::Tensor forward(torch::Tensor x) { return SequentialImpl::forward(std::move(x)); }
};
TORCH_MODULE(Stage);

torch::nn::Sequential make_model() {
  torch::manual_seed(0);  // same initial weights on every rank and in the reference
  Stage seq1(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 3).padding(1)), torch::nn::ReLU(),
             ResidualBlock(8), torch::nn::MaxPool2d(2), ResidualBlock(8));
  Stage seq2(ResidualBlock(8), ResidualBlock(8), torch::nn::AdaptiveAvgPool2d(1),
             torch::nn::Flatten(), torch::nn::Linear(8, 10));
  return torch::nn::Sequential({{"seq1", seq1}, {"seq2", seq2}});
}

torch::Tensor loss_fn(const torch::Tensor& logits, const torch::Tensor& labels) {
  return torch::cross_entropy_loss(logits, labels);  // mean over the micro-batch
}

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  const int64_t batch_size = 16, split_size = 4;
  auto batches = [&](int64_t step) {  // 12x12 one-channel "images", 10 classes
    torch::manual_seed(100 + step);
    return paratorch::Batch{torch::randn({batch_size, 1, 12, 12}), torch::randint(0, 10, {batch_size})};
  };

  auto reference = [] {
    auto model = make_model();
    auto opt = std::make_shared<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(0.05));
    return paratorch::plain_trainee(model.ptr(), opt, [model](const paratorch::Batch& b) mutable {
      return loss_fn(model->forward(b.input), b.target);
    });
  };

  auto pipelined = [&] {
    paratorch::PipelineOptions options;
    options.microbatches = static_cast<int>(batch_size / split_size);
    options.schedule = paratorch::PipelineSchedule::kOneFOneB;
    options.partition = paratorch::PartitionBy::kTime;  // timed on rank 0, the same cut everywhere
    auto example = batches(0).input.narrow(0, 0, split_size);  // one micro-batch
    auto pipe = std::make_shared<paratorch::Pipeline>(make_model(), world.comm(), example, options);
    if (world.rank() == 0) std::printf("pipeline_cnn: %s\n", pipe->describe().c_str());
    auto opt = std::make_shared<torch::optim::SGD>(pipe->parameters(), torch::optim::SGDOptions(0.05));
    paratorch::Trainee t;
    t.step = [pipe, opt](const paratorch::Batch& b) {
      opt->zero_grad();
      const double loss = pipe->step(b.input, b.target, loss_fn);
      opt->step();
      return loss;
    };
    t.full_parameters = [pipe] { return pipe->full_parameters(); };
    return t;
  };

  paratorch::EquivalenceOptions check;
  check.steps = 5;
  const auto report = paratorch::check_equivalence(world.comm(), batches, reference, pipelined, check);
  if (world.rank() == 0) std::printf("%s\n", report.summary_line("pipeline_cnn").c_str());
  return report.pass ? 0 : 1;
}
