// examples/hybrid_3d/main.cpp — 3D parallelism for your own model, in C++:
// data × pipeline × tensor parallel (dp=2 × pp=2 × tp=2) with ZeRO stage 1
// sharding the optimizer state over dp. Run it on 8 ranks:
//   mpirun -np 8 ./hybrid_3d
//
// It mirrors Megatron-LM / DeepSpeed's 3D setup
//   mpu.initialize_model_parallel(tensor_model_parallel_size=2, pipeline_model_parallel_size=2)
//   model = GPTModel(...)   # ColumnParallelLinear / RowParallelLinear inside each block
//   model = PipelineModule(layers=blocks, num_stages=2, partition_method="uniform")
//   engine, *_ = deepspeed.initialize(model=model, config={"zero_optimization": {"stage": 1},
//                                                          "gradient_clipping": 0.5,
//                                                          "gradient_accumulation_steps": 4, ...})
//   loss = engine.train_batch(data_iter)   # 1F1B over 4 micro-batches
// composed here from three independent public pieces: parallelize() splits
// the Linear children over the tp group, Pipeline cuts the Sequential over
// the pp group, and ZeroRedundancyOptimizer over the stage's parameters
// averages gradients, clips them by the whole model's norm (summed over dp,
// tp and pp) and shards AdamW's state over the dp group. The result
// is checked against the same model trained in one process
// (paratorch/verify.h): same losses and parameters up to float summation
// order, or the program exits non-zero.
//
// It includes the umbrella header (every public header, as DeepSpeed's one
// import), which also proves in `make test` that each installed header
// compiles on the installed include paths alone.
#include <paratorch/paratorch.h>

#include <cstdio>
#include <memory>

namespace nn = torch::nn;
namespace tp = paratorch::tensor_parallel;

constexpr int64_t kDim = 8, kHidden = 32, kBlocks = 4, kBatch = 16, kMicrobatches = 4;
constexpr double kMaxGradNorm = 0.5;  // below every step's norm here (0.8-1.4): the clip acts

// A pre-LayerNorm residual MLP block. Its Linear layers sit in a Sequential,
// so parallelize() swaps them there and forward needs no change.
struct BlockImpl : nn::Module {
  BlockImpl() {
    ln = register_module("ln", nn::LayerNorm(nn::LayerNormOptions({kDim})));
    mlp = register_module("mlp", nn::Sequential({{"c_fc", nn::Linear(kDim, kHidden)},
                                                 {"act", nn::GELU()},
                                                 {"c_proj", nn::Linear(kHidden, kDim)}}));
  }
  torch::Tensor forward(const torch::Tensor& x) { return x + mlp->forward(ln(x)); }
  nn::LayerNorm ln{nullptr};
  nn::Sequential mlp{nullptr};
};
TORCH_MODULE(Block);

// The whole model, the same values on every rank (layout invariance).
nn::Sequential make_model() {
  torch::manual_seed(0);
  nn::Sequential net;
  for (int64_t i = 0; i < kBlocks; ++i) net->push_back("b" + std::to_string(i), Block());
  return net;
}

std::unique_ptr<torch::optim::Optimizer> adamw(std::vector<torch::Tensor> params) {
  return std::make_unique<torch::optim::AdamW>(std::move(params), torch::optim::AdamWOptions(1e-2));
}

torch::Tensor loss_fn(const torch::Tensor& out, const torch::Tensor& target) { return torch::mse_loss(out, target); }

// A fixed regression task; every rank builds the same global batch.
paratorch::Batch batch_of(int64_t step) {
  torch::manual_seed(100 + step);
  auto x = torch::randn({kBatch, kDim});
  return {x, torch::sin(x).flip(-1)};
}

paratorch::Trainee reference() {
  auto net = make_model();
  std::shared_ptr<torch::optim::Optimizer> opt = adamw(net->parameters());
  return paratorch::Trainee{[net, opt](const paratorch::Batch& b) mutable {
                              opt->zero_grad();
                              auto loss = loss_fn(net->forward(b.input), b.target);
                              loss.backward();
                              torch::nn::utils::clip_grad_norm_(net->parameters(), kMaxGradNorm);
                              opt->step();
                              return loss.item<double>();
                            },
                            [net] { return paratorch::named_parameter_copies(*net); }};
}

// The three pieces, applied in order: tp splits the full weights, the
// pipeline keeps this rank's stage of the split model, ZeRO shards that
// stage's optimizer state over the dp replicas of the same stage and shard.
paratorch::Trainee hybrid(const paratorch::ProcessGroups& groups) {
  auto net = make_model();
  tp::parallelize(net.ptr(), groups.tp(),
                  {{"*.mlp.c_fc", tp::ParallelStyle::colwise()}, {"*.mlp.c_proj", tp::ParallelStyle::rowwise()}});
  const auto specs = tp::shard_specs(*net);

  paratorch::PipelineOptions po;
  po.microbatches = kMicrobatches;
  po.schedule = paratorch::PipelineSchedule::kOneFOneB;
  po.partition = paratorch::PartitionBy::kSplitPoints;
  po.split_points = {"b2"};
  const int64_t micro = kBatch / groups.layout().dp / kMicrobatches;
  auto pipe = std::make_shared<paratorch::Pipeline>(net, groups.pp(), torch::zeros({micro, kDim}), po);

  paratorch::ZeroRedundancyOptimizerOptions zo;
  zo.max_grad_norm = kMaxGradNorm;  // the norm of the whole model: shards over dp, slices over tp, stages over pp
  zo.clip_pp_group = groups.pp();
  zo.clip_tp_group = groups.tp();
  zo.clip_tp_specs = specs;
  auto zero = std::make_shared<paratorch::ZeroRedundancyOptimizer>(pipe->named_parameters(), groups.dp(), adamw, zo);
  // One dp reduction per step, during the stage's last backward, not one per micro-batch.
  pipe->set_gradient_sync([zero](bool last) { zero->set_requires_gradient_sync(last); });

  paratorch::Trainee t;
  auto dp = groups.dp();
  const int dp_rank = groups.coords().dp;
  t.step = [net, pipe, zero, dp, dp_rank](const paratorch::Batch& global) {
    const auto mine = paratorch::local_slice(global, dp_rank, dp->size());
    zero->zero_grad();
    const double local_loss = pipe->step(mine.input, mine.target, loss_fn);
    zero->step();  // the gradients are dp averages; clips, steps this rank's shard, all-gathers
    auto loss = torch::tensor({local_loss}, torch::kDouble);
    dp->all_reduce(loss, paratorch::ReduceOp::kSum);  // mean over equal slices = the global mean
    return loss.item<double>() / dp->size();
  };
  auto tp_group = groups.tp();
  t.full_parameters = [net, pipe, specs, tp_group] {
    return tp::full_parameters(pipe->full_parameters(), specs, *tp_group);  // pp, then tp gathers
  };
  return t;
}

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  const auto layout = paratorch::Layout::parse("dp=2,pp=2,tp=2").resolve(world.size());
  paratorch::ProcessGroups groups(world.comm(), layout);

  paratorch::EquivalenceOptions check;
  check.steps = 5;
  const auto report = paratorch::check_equivalence(world.comm(), batch_of, reference,
                                                   [&] { return hybrid(groups); }, check);
  if (world.rank() == 0) std::puts(report.summary_line("hybrid_3d " + layout.to_string()).c_str());
  return report.pass ? 0 : 1;
}
