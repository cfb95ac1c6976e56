// tests/parallel/tensor_parallel/tiny_transformer.h — a small user-style
// transformer for the parallelize() tests: token embedding, blocks of causal
// self-attention (fused qkv, called through forward_child) and an MLP held in
// a Sequential, in a ModuleList. Sizes are tiny so the tests stay fast.
#pragma once
#include <paratorch/tensor_parallel.h>

#include <torch/torch.h>

#include <cmath>

namespace tiny {

namespace nn = torch::nn;
namespace tp = paratorch::tensor_parallel;

constexpr int64_t kVocab = 8, kDim = 8, kHeads = 2, kLayers = 2;

struct AttentionImpl : nn::Module {
  AttentionImpl() {
    register_module("c_attn", nn::Linear(kDim, 3 * kDim));
    register_module("c_proj", nn::Linear(kDim, kDim));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const int64_t B = x.size(0), T = x.size(1), hd = kDim / kHeads;
    auto qkv = tp::forward_child(*this, "c_attn", x).chunk(3, -1);
    const int64_t heads = qkv[0].size(-1) / hd;  // n_heads / tp on a tp rank
    auto split = [&](const torch::Tensor& t) { return t.reshape({B, T, heads, hd}).transpose(1, 2); };
    auto q = split(qkv[0]), k = split(qkv[1]), v = split(qkv[2]);
    auto att = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(hd));
    att = att.masked_fill(torch::ones({T, T}, torch::kBool).triu(1), -1e9).softmax(-1);
    auto y = torch::matmul(att, v).transpose(1, 2).reshape({B, T, heads * hd});
    return tp::forward_child(*this, "c_proj", y);
  }
};
TORCH_MODULE(Attention);

struct BlockImpl : nn::Module {
  BlockImpl() {
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

// Token ids [B, T] -> features [B, T, kDim]. The embedding is called by name
// so that the vocab style can swap it.
struct NetImpl : nn::Module {
  NetImpl() {
    register_module("wte", nn::Embedding(kVocab, kDim));
    h = register_module("h", nn::ModuleList());
    for (int64_t i = 0; i < kLayers; ++i) h->push_back(Block());
  }
  torch::Tensor forward(const torch::Tensor& ids) {
    auto x = tp::forward_child(*this, "wte", ids);
    for (const auto& block : *h) x = block->as<BlockImpl>()->forward(x);
    return x;
  }
  nn::ModuleList h{nullptr};
};
TORCH_MODULE(Net);

/// The same Net on every rank: seeded alike.
inline Net make_net() {
  torch::manual_seed(7);
  return Net();
}

/// The Megatron plan for Net.
inline tp::TensorParallelPlan megatron_plan() {
  return {{"h.*.attn.c_attn", tp::ParallelStyle::colwise(/*fused_parts=*/3)},
          {"h.*.attn.c_proj", tp::ParallelStyle::rowwise()},
          {"h.*.mlp.c_fc", tp::ParallelStyle::colwise()},
          {"h.*.mlp.c_proj", tp::ParallelStyle::rowwise()},
          {"wte", tp::ParallelStyle::vocab()}};
}

}  // namespace tiny
