// examples/tensor_parallel_mlp/main.cpp — tensor parallelism for your own
// model, in C++. Run it on 2 ranks:  mpirun -np 2 ./tensor_parallel_mlp
//
// It mirrors the PyTorch snippets
//   # Megatron-LM's MLP, Z = GeLU(X W1) W2, from the layers:
//   fc1 = ColumnParallelLinear(d, 4 * d); fc2 = RowParallelLinear(4 * d, d)
//   z = fc2(F.gelu(fc1(x)))
//   # a whole block, through a plan:
//   parallelize_module(block, tp_mesh, {"attn.c_attn": ColwiseParallel(),
//                                       "attn.c_proj": RowwiseParallel(),
//                                       "mlp.c_fc": ColwiseParallel(),
//                                       "mlp.c_proj": RowwiseParallel()})
// Every rank of the tp group sees the same batch; each holds half of every
// split weight. Both parts are checked against the unsplit model trained in
// one process (paratorch/verify.h): the same losses and parameters up to
// float summation order, or the program exits non-zero.
#include <paratorch/tensor_parallel.h>
#include <paratorch/verify.h>
#include <paratorch/world.h>

#include <cmath>
#include <cstdio>

namespace nn = torch::nn;
namespace tp = paratorch::tensor_parallel;

constexpr int64_t kDim = 16, kHeads = 4, kSeq = 6, kBatch = 8;

// ---- part 1: the Megatron MLP built from the layers ------------------------

struct MlpImpl : nn::Module {  // the unsplit model
  MlpImpl() {
    torch::manual_seed(1);
    fc1 = register_module("fc1", nn::Linear(kDim, 4 * kDim));
    fc2 = register_module("fc2", nn::Linear(4 * kDim, kDim));
  }
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::gelu(fc1(x))); }
  nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

struct ParallelMlpImpl : nn::Module {  // W1 split by columns, W2 by rows
  explicit ParallelMlpImpl(const std::shared_ptr<paratorch::Communicator>& group) {
    fc1 = register_module("fc1", tp::ColumnParallelLinear(tp::ColumnParallelLinearOptions(kDim, 4 * kDim), group));
    fc2 = register_module("fc2", tp::RowParallelLinear(tp::RowParallelLinearOptions(4 * kDim, kDim), group));
  }
  // GeLU is elementwise, so it runs on each rank's columns with no communication.
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::gelu(fc1(x))); }
  tp::ColumnParallelLinear fc1{nullptr};
  tp::RowParallelLinear fc2{nullptr};
};
TORCH_MODULE(ParallelMlp);

// ---- part 2: a user-written transformer block, parallelized by a plan -------

// Children that parallelize() may swap are called by name (forward_child) or
// held in a Sequential: a member holder would keep calling the unsplit layer.
struct AttentionImpl : nn::Module {
  AttentionImpl() {
    register_module("c_attn", nn::Linear(kDim, 3 * kDim));  // fused [q; k; v]
    register_module("c_proj", nn::Linear(kDim, kDim));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t B = x.size(0), T = x.size(1), head_dim = kDim / kHeads;
    auto qkv = tp::forward_child(*this, "c_attn", x).chunk(3, -1);
    const int64_t heads = qkv[0].size(-1) / head_dim;  // kHeads / tp on a tp rank
    auto split = [&](const torch::Tensor& t) { return t.reshape({B, T, heads, head_dim}).transpose(1, 2); };
    auto q = split(qkv[0]), k = split(qkv[1]), v = split(qkv[2]);
    auto att = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim));
    att = att.masked_fill(torch::ones({T, T}, torch::kBool).triu(1), -1e9).softmax(-1);
    auto y = torch::matmul(att, v).transpose(1, 2).reshape({B, T, heads * head_dim});
    return tp::forward_child(*this, "c_proj", y);
  }
};
TORCH_MODULE(Attention);

struct BlockImpl : nn::Module {
  BlockImpl() {
    torch::manual_seed(2);
    ln_1 = register_module("ln_1", nn::LayerNorm(nn::LayerNormOptions({kDim})));
    attn = register_module("attn", Attention());
    ln_2 = register_module("ln_2", nn::LayerNorm(nn::LayerNormOptions({kDim})));
    mlp = register_module("mlp", nn::Sequential({{"c_fc", nn::Linear(kDim, 4 * kDim)},
                                                 {"act", nn::GELU()},
                                                 {"c_proj", nn::Linear(4 * kDim, kDim)}}));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = x + attn(ln_1(x));
    return h + mlp->forward(ln_2(h));
  }
  nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  Attention attn{nullptr};
  nn::Sequential mlp{nullptr};
};
TORCH_MODULE(Block);

// ---- training both ways -----------------------------------------------------

// A fixed regression task; every rank builds the same global batch.
paratorch::Batch batch_of(int64_t step, bool sequence) {
  torch::manual_seed(100 + step);
  auto x = sequence ? torch::randn({kBatch, kSeq, kDim}) : torch::randn({kBatch, kDim});
  return {x, torch::sin(x).flip(-1)};
}

// `model` trained with SGD on the whole batch. Each tp rank steps its own
// shards: their gradients are slices of the whole model's gradient.
template <typename Model>
paratorch::Trainee trainee(Model model, paratorch::Communicator* group) {
  auto optimizer = std::make_shared<torch::optim::SGD>(model->parameters(), 0.1);
  paratorch::Trainee t = paratorch::plain_trainee(model.ptr(), optimizer, [model](const paratorch::Batch& b) mutable {
    return torch::mse_loss(model->forward(b.input), b.target);
  });
  if (group) t.full_parameters = [model, group] { return tp::full_parameters(*model, *group); };
  return t;
}

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  auto group = world.comm();  // the whole world is one tp group here
  bool pass = true;

  auto mlp = paratorch::check_equivalence(
      group, [](int64_t s) { return batch_of(s, false); }, [] { return trainee(Mlp(), nullptr); },
      [&] {
        ParallelMlp model(group);
        tp::load_full_parameters(*model, paratorch::named_parameter_copies(*Mlp()));  // the same start
        return trainee(model, group.get());
      });
  if (world.rank() == 0) std::puts(mlp.summary_line("tensor_parallel_mlp megatron_mlp").c_str());
  pass = pass && mlp.pass;

  auto block = paratorch::check_equivalence(
      group, [](int64_t s) { return batch_of(s, true); }, [] { return trainee(Block(), nullptr); },
      [&] {
        Block model;  // the user's weights, then split in place
        const auto replaced = tp::parallelize(model.ptr(), group,
                                              {{"attn.c_attn", tp::ParallelStyle::colwise(/*fused_parts=*/3)},
                                               {"attn.c_proj", tp::ParallelStyle::rowwise()},
                                               {"mlp.c_fc", tp::ParallelStyle::colwise()},
                                               {"mlp.c_proj", tp::ParallelStyle::rowwise()}});
        if (world.rank() == 0) std::printf("parallelize: replaced %zu children\n", replaced.size());
        return trainee(model, group.get());
      });
  if (world.rank() == 0) std::puts(block.summary_line("tensor_parallel_mlp transformer_block").c_str());
  pass = pass && block.pass;
  return pass ? 0 : 1;
}
