// examples/fsdp_transformer/main.cpp — fully sharded data parallelism (ZeRO
// stage 3) on a small transformer written here, checked against the same
// model trained in one process.
//
// The PyTorch program it mirrors:
//   model = nn.Sequential(Embed(), Block(), Block(), Head())   # Head's weight is Embed's tok.weight
//   for layer in model: fully_shard(layer, mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16))
//   fully_shard(model)
//   opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
//   for x, y in loader:                       # this rank's slice of each global batch
//       loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
//       loss.backward(); opt.step(); opt.zero_grad()
//
// Run it on 2 ranks:  mpirun -np 2 ./fsdp_transformer
// It trains twice with paratorch::check_equivalence: in fp32 (losses and
// parameters must match one process to 1e-5), and computing in bf16 with
// fp32 masters against the fp32 single-process run (bf16 keeps 8 mantissa
// bits: losses judged at 1e-2 relative; measured ~7e-4). It prints both
// verdicts and exits non-zero on FAIL.
#include <paratorch/init.h>
#include <paratorch/verify.h>
#include <paratorch/world.h>
#include <paratorch/zero.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace {

constexpr int64_t kVocab = 32, kSeq = 8, kModel = 32, kHeads = 4, kBatch = 8;

// Token and position embeddings.
struct EmbedImpl : torch::nn::Module {
  EmbedImpl() {
    tok = register_module("tok", torch::nn::Embedding(kVocab, kModel));
    pos = register_module("pos", torch::nn::Embedding(kSeq, kModel));
  }
  torch::Tensor forward(const torch::Tensor& ids) {
    return tok(ids) + pos(torch::arange(ids.size(1), ids.options()));
  }
  torch::nn::Embedding tok{nullptr}, pos{nullptr};
};
TORCH_MODULE(Embed);

// Pre-norm block: causal self-attention and a GELU MLP, each residual.
struct BlockImpl : torch::nn::Module {
  BlockImpl() {
    ln1 = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kModel})));
    // No bias: a key bias shifts every score of a row equally, so softmax
    // gives it an exactly-zero gradient in theory and round-off noise in
    // practice, which AdamW's normalization would blow up to full-size steps.
    qkv = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(kModel, 3 * kModel).bias(false)));
    proj = register_module("proj", torch::nn::Linear(kModel, kModel));
    ln2 = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kModel})));
    fc = register_module("fc", torch::nn::Linear(kModel, 4 * kModel));
    out = register_module("out", torch::nn::Linear(4 * kModel, kModel));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t b = x.size(0), t = x.size(1), hd = kModel / kHeads;
    auto parts = qkv(ln1(x)).view({b, t, 3, kHeads, hd}).permute({2, 0, 3, 1, 4});
    auto scores = torch::matmul(parts[0], parts[1].transpose(-2, -1)) / std::sqrt(static_cast<double>(hd));
    auto mask = torch::ones({t, t}, torch::kBool).triu(1);
    auto attn = torch::softmax(scores.masked_fill(mask, -1e9), -1);
    auto y = torch::matmul(attn, parts[2]).transpose(1, 2).reshape({b, t, kModel});
    auto h = x + proj(y);
    return h + out(torch::gelu(fc(ln2(h))));
  }
  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  torch::nn::Linear qkv{nullptr}, proj{nullptr}, fc{nullptr}, out{nullptr};
};
TORCH_MODULE(Block);

// The output layer reads the token embedding's weight (weight tying, Press &
// Wolf 2017, as in GPT-2): one tensor in two units, which fully_shard shards
// once and whose gradient it sums over both.
struct HeadImpl : torch::nn::Module {
  explicit HeadImpl(torch::Tensor tok_weight) {
    ln = register_module("ln", torch::nn::LayerNorm(torch::nn::LayerNormOptions({kModel})));
    weight = register_parameter("weight", std::move(tok_weight));
  }
  torch::Tensor forward(const torch::Tensor& x) { return torch::matmul(ln(x), weight.t()); }
  torch::nn::LayerNorm ln{nullptr};
  torch::Tensor weight;
};
TORCH_MODULE(Head);

// The same weights in every process and layout: seeded by parameter name.
torch::nn::Sequential make_model() {
  Embed embed;
  torch::nn::Sequential model{embed, Block(), Block(), Head(embed->tok->weight)};
  paratorch::init_parameters(*model, 2026, [](const std::string& name, const torch::Tensor& p) {
    if (name.find("ln") != std::string::npos)
      return paratorch::InitSpec::constant(name.size() > 6 && name.substr(name.size() - 6) == "weight" ? 1.0 : 0.0);
    return paratorch::InitSpec::normal(0.0, p.dim() > 1 ? 0.08 : 0.02);
  });
  return model;
}

// Global batch of step s: random starts of the sequence t -> (5t + 3) mod V.
paratorch::Batch batch_of(int64_t step) {
  auto start = torch::randint(kVocab, {kBatch, 1}, paratorch::generator_for(static_cast<uint64_t>(step), "tokens"));
  auto seq = torch::empty({kBatch, kSeq + 1}, torch::kLong);
  seq.select(1, 0).copy_(start.squeeze(1));
  for (int64_t t = 1; t <= kSeq; ++t) seq.select(1, t).copy_((seq.select(1, t - 1) * 5 + 3) % kVocab);
  return {seq.narrow(1, 0, kSeq), seq.narrow(1, 1, kSeq)};
}

torch::Tensor loss_of(const torch::Tensor& logits, const torch::Tensor& target) {
  return torch::cross_entropy_loss(logits.to(torch::kFloat).flatten(0, 1), target.flatten());
}

std::shared_ptr<torch::optim::AdamW> adamw(const std::vector<torch::Tensor>& params) {
  return std::make_shared<torch::optim::AdamW>(params, torch::optim::AdamWOptions(3e-3));
}

// Each parameter once. libtorch's parameters() lists a tied tensor once per
// module holding it (Python's deduplicates), and AdamW would step it twice.
std::vector<torch::Tensor> unique_parameters(const torch::nn::Module& model) {
  std::vector<torch::Tensor> out;
  for (const auto& p : model.parameters())
    if (std::none_of(out.begin(), out.end(), [&](const torch::Tensor& q) { return q.is_same(p); })) out.push_back(p);
  return out;
}

// The model trained by fully_shard over `comm`, each rank on its slice.
paratorch::Trainee sharded_trainee(std::shared_ptr<paratorch::Communicator> comm, torch::ScalarType compute) {
  auto model = make_model();
  paratorch::FullyShardOptions options;
  options.units = {"0", "1", "2", "3"};  // embedding, each block, head (tied to the embedding)
  options.mixed_precision.param_dtype = compute;
  auto sharded = std::make_shared<paratorch::FullyShardedModule>(paratorch::fully_shard(model.ptr(), comm, options));
  auto opt = adamw(sharded->parameters());
  auto step = [model, opt, comm](const paratorch::Batch& global) mutable {
    auto mine = paratorch::local_slice(global, comm->rank(), comm->size());
    opt->zero_grad();
    auto loss = loss_of(model->forward(mine.input), mine.target);
    loss.backward();  // gathers each unit again, reduce-scatters its gradient
    opt->step();      // AdamW on this rank's fp32 shards only
    auto mean = loss.detach().clone();
    comm->all_reduce(mean, paratorch::ReduceOp::kAvg);
    return mean.item<double>();
  };
  return {step, [sharded] { return sharded->full_parameters(); }};
}

}  // namespace

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  auto reference = [] {
    auto model = make_model();
    return paratorch::plain_trainee(
        model.ptr(), adamw(unique_parameters(*model)),
        [model](const paratorch::Batch& b) mutable { return loss_of(model->forward(b.input), b.target); });
  };
  bool pass = true;
  for (auto compute : {torch::kFloat, torch::kBFloat16}) {
    paratorch::EquivalenceOptions check;
    check.steps = 6;
    check.tolerance = compute == torch::kFloat ? 1e-5 : 1e-2;
    // bf16: losses only. Parameters that start at 0 (biases) stay near 0,
    // where AdamW's normalized steps turn bf16 round-off in their small
    // gradients into relative differences of ~10% after a few steps.
    check.judge_parameters = compute == torch::kFloat;
    auto report = paratorch::check_equivalence(
        world.comm(), batch_of, reference, [&] { return sharded_trainee(world.comm(), compute); }, check);
    const std::string what = compute == torch::kFloat ? "fsdp-fp32" : "fsdp-bf16-compute";
    if (world.rank() == 0) {
      std::printf("%s losses:", what.c_str());
      for (double l : report.parallel_losses) std::printf(" %.4f", l);
      std::printf(" (worst parameter: %s)\n%s\n", report.worst_param.c_str(), report.summary_line(what).c_str());
    }
    // Judged on losses alone, a run that does not train could pass: the
    // losses must fall by far more than the tolerance allows them to differ.
    const double fall = 1.0 - report.parallel_losses.back() / report.parallel_losses.front();
    const bool trains = check.judge_parameters || fall > 5 * check.tolerance;
    if (world.rank() == 0 && !trains)
      std::printf("%s: the loss fell by only %.3g over %d steps; a check of losses alone needs a run that trains\n",
                  what.c_str(), fall, check.steps);
    pass = pass && report.pass && trains;
  }
  return pass ? 0 : 1;
}
