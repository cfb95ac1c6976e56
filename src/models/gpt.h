// src/models/gpt.h — the `gpt` model of DESIGN.md: GPT-2 as in nanoGPT.
//
// Token + learned position embeddings, n_layers pre-LayerNorm blocks of
// causal self-attention (fused qkv projection with bias) and MLP (4x, tanh
// GELU), final LayerNorm, output head tied to the token embedding. Parameter
// names match nanoGPT / Hugging Face GPT-2 (transformer.wte.weight,
// transformer.h.0.attn.c_attn.weight, ...) so weights interchange.
// Init (GPT-2 paper): N(0, 0.02), residual output projections (c_proj)
// N(0, 0.02/sqrt(2*n_layers)), biases 0, LayerNorm 1/0.
#pragma once
#include "models/model.h"

namespace paratorch::models {

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  CausalSelfAttentionImpl(int d_model, int n_heads);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear c_attn{nullptr}, c_proj{nullptr};
  int n_heads;
};
TORCH_MODULE(CausalSelfAttention);

class GptMlpImpl : public torch::nn::Module {
 public:
  explicit GptMlpImpl(int d_model);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(GptMlp);

class GptBlockImpl : public torch::nn::Module {
 public:
  GptBlockImpl(int d_model, int n_heads);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  CausalSelfAttention attn{nullptr};
  GptMlp mlp{nullptr};
};
TORCH_MODULE(GptBlock);

class Gpt : public BundledModel {
 public:
  explicit Gpt(const ModelConfig& config);
  /// input: int64 tokens [B, T] -> logits [B, T, vocab]
  torch::Tensor forward(const torch::Tensor& input) override;
  torch::Tensor loss(const Batch& batch) override;
  InitSpec init_spec(const std::string& name, const torch::Tensor& param) const override;
  std::vector<ModelBlock> blocks() override;

 private:
  ModelConfig config_;
  std::shared_ptr<torch::nn::Module> transformer_;
  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h;
  torch::nn::LayerNorm ln_f{nullptr};
};

}  // namespace paratorch::models
