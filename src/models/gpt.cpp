// src/models/gpt.cpp — see gpt.h.
#include "models/gpt.h"

#include <paratorch/errors.h>

#include <cmath>

namespace paratorch::models {

CausalSelfAttentionImpl::CausalSelfAttentionImpl(int d, int heads) : n_heads(heads) {
  c_attn = register_module("c_attn", torch::nn::Linear(d, 3 * d));
  c_proj = register_module("c_proj", torch::nn::Linear(d, d));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), hd = C / n_heads;
  auto qkv = c_attn(x).split(C, /*dim=*/2);
  // [B, T, C] -> [B * n_heads, T, hd]
  auto heads = [&](const torch::Tensor& t) {
    return t.view({B, T, n_heads, hd}).transpose(1, 2).reshape({B * n_heads, T, hd});
  };
  auto q = heads(qkv[0]), k = heads(qkv[1]), v = heads(qkv[2]);
  // softmax(q k^T / sqrt(hd)) with future positions masked (causal). One
  // baddbmm computes mask + scale * q k^T: it replaces a separate scaling
  // and masked_fill over the [B * n_heads, T, T] scores, forward and backward.
  auto mask = torch::full({T, T}, -std::numeric_limits<float>::infinity(), x.options()).triu(1);
  auto att = torch::softmax(
      torch::baddbmm(mask, q, k.transpose(1, 2), /*beta=*/1, /*alpha=*/1.0 / std::sqrt(static_cast<double>(hd))), -1);
  auto y = torch::bmm(att, v).view({B, n_heads, T, hd}).transpose(1, 2).contiguous().view({B, T, C});
  return c_proj(y);
}

GptMlpImpl::GptMlpImpl(int d) {
  c_fc = register_module("c_fc", torch::nn::Linear(d, 4 * d));
  c_proj = register_module("c_proj", torch::nn::Linear(4 * d, d));
}

torch::Tensor GptMlpImpl::forward(const torch::Tensor& x) {
  return c_proj(torch::gelu(c_fc(x), "tanh"));
}

GptBlockImpl::GptBlockImpl(int d, int heads) {
  ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  attn = register_module("attn", CausalSelfAttention(d, heads));
  ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  mlp = register_module("mlp", GptMlp(d));
}

torch::Tensor GptBlockImpl::forward(const torch::Tensor& x) {
  auto y = x + attn(ln_1(x));
  return y + mlp(ln_2(y));
}

Gpt::Gpt(const ModelConfig& c) : config_(c) {
  transformer_ = register_module("transformer", std::make_shared<torch::nn::Module>());
  wte = transformer_->register_module("wte", torch::nn::Embedding(c.vocab_size, c.d_model));
  wpe = transformer_->register_module("wpe", torch::nn::Embedding(c.seq_len, c.d_model));
  h = transformer_->register_module("h", torch::nn::ModuleList());
  for (int i = 0; i < c.n_layers; ++i) h->push_back(GptBlock(c.d_model, c.n_heads));
  ln_f = transformer_->register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model})));
  // lm_head is tied to wte (no parameter of its own), as in GPT-2.
}

torch::Tensor Gpt::forward(const torch::Tensor& input) {
  const int64_t T = input.size(1);
  if (T > config_.seq_len)
    throw UsageError("paratorch: gpt input of " + std::to_string(T) + " tokens exceeds seq_len " +
                     std::to_string(config_.seq_len));
  auto pos = torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(input.device()));
  auto x = wte(input) + wpe(pos);
  for (const auto& block : *h) x = block->as<GptBlock>()->forward(x);
  return torch::matmul(ln_f(x), wte->weight.t());
}

// embed, transformer.h.0 .. h.{L-1}, head (ln_f + the tied output projection).
std::vector<ModelBlock> Gpt::blocks() {
  std::vector<ModelBlock> out;
  out.push_back(make_block("embed", {"transformer.wte.", "transformer.wpe."}, [this](const torch::Tensor& tokens) {
    auto pos = torch::arange(tokens.size(1), torch::TensorOptions().dtype(torch::kLong).device(tokens.device()));
    return wte(tokens) + wpe(pos);
  }));
  for (size_t i = 0; i < h->size(); ++i) {
    const std::string name = "transformer.h." + std::to_string(i);
    auto block = h[i]->as<GptBlock>();
    out.push_back(make_block(name, {name + "."}, [block](const torch::Tensor& x) { return block->forward(x); }));
  }
  out.push_back(make_block("head", {"transformer.ln_f."},
                           [this](const torch::Tensor& x) { return torch::matmul(ln_f(x), wte->weight.t()); }));
  out.back().shared = {"transformer.wte.weight"};
  return out;
}

torch::Tensor Gpt::loss(const Batch& batch) {
  auto logits = forward(batch.input);
  return torch::cross_entropy_loss(logits.view({-1, logits.size(-1)}), batch.target.view({-1}));
}

InitSpec Gpt::init_spec(const std::string& name, const torch::Tensor& /*param*/) const {
  auto ends_with = [&](const std::string& s) {
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  if (name.find(".ln_") != std::string::npos || name.find("ln_f") != std::string::npos)
    return InitSpec::constant(ends_with(".weight") ? 1.0 : 0.0);
  if (ends_with(".bias")) return InitSpec::constant(0.0);
  if (ends_with("c_proj.weight"))
    return InitSpec::normal(0.0, 0.02 / std::sqrt(2.0 * config_.n_layers));
  return InitSpec::normal(0.0, 0.02);
}

}  // namespace paratorch::models
