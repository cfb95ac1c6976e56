// src/models/gpt.h — the `gpt` model (docs/concepts.md): GPT-2 as in nanoGPT.
//
// Token + learned position embeddings, n_layers pre-LayerNorm blocks of
// causal self-attention (fused qkv projection with bias) and MLP (4x, tanh
// GELU), final LayerNorm, output head tied to the token embedding. Parameter
// names match nanoGPT / Hugging Face GPT-2 (transformer.wte.weight,
// transformer.h.0.attn.c_attn.weight, ...) so weights interchange.
// Init (GPT-2 paper): N(0, 0.02), residual output projections (c_proj)
// N(0, 0.02/sqrt(2*n_layers)), biases 0, LayerNorm 1/0.
//
// Tensor parallelism (Megatron-LM, Shoeybi et al. 2019, §3): the layers are
// tensor_parallel layers, plain when the context is inactive. Attention heads
// are split over the tp group (qkv column-parallel with q, k, v split part
// by part; c_proj row-parallel), the MLP is column- then row-parallel, the
// token embedding is vocabulary-parallel and the tied head produces this
// rank's vocabulary slice of the logits, which the vocab-parallel
// cross-entropy consumes without gathering. Under sequence parallelism
// (Korthikanti et al. 2022) LayerNorms and residuals hold a slice of the
// sequence between the layers.
#pragma once
#include "models/model.h"
#include "tensor_parallel/layers.h"

namespace paratorch::models {

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  CausalSelfAttentionImpl(int d_model, int n_heads, const tensor_parallel::TensorParallelContext& tp = {});
  torch::Tensor forward(const torch::Tensor& x);
  tensor_parallel::ColumnParallelLinear c_attn{nullptr};
  tensor_parallel::RowParallelLinear c_proj{nullptr};
  int n_heads;  // heads on this rank: n_heads / tp
};
TORCH_MODULE(CausalSelfAttention);

class GptMlpImpl : public torch::nn::Module {
 public:
  explicit GptMlpImpl(int d_model, const tensor_parallel::TensorParallelContext& tp = {});
  torch::Tensor forward(const torch::Tensor& x);
  tensor_parallel::ColumnParallelLinear c_fc{nullptr};
  tensor_parallel::RowParallelLinear c_proj{nullptr};
};
TORCH_MODULE(GptMlp);

class GptBlockImpl : public torch::nn::Module {
 public:
  GptBlockImpl(int d_model, int n_heads, const tensor_parallel::TensorParallelContext& tp = {});
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  CausalSelfAttention attn{nullptr};
  GptMlp mlp{nullptr};
};
TORCH_MODULE(GptBlock);

class Gpt : public BundledModel {
 public:
  /// UsageError when tp does not divide n_heads, 4*d_model, vocab_size (or
  /// seq_len under sequence parallelism).
  explicit Gpt(const ModelConfig& config, const tensor_parallel::TensorParallelContext& tp = {});
  /// The constructor's tp checks, without a tp group (before MPI starts).
  static void check_tensor_parallel(const ModelConfig& config, int tp, bool sequence_parallel);
  /// input: int64 tokens [B, T] -> logits [B, T, vocab / tp] (this rank's
  /// vocabulary slice; the whole vocabulary when tp = 1)
  torch::Tensor forward(const torch::Tensor& input) override;
  torch::Tensor loss(const Batch& batch) override;
  /// Mean cross-entropy of forward()'s logits against target tokens [B, T]
  /// (vocab-parallel under tp): the loss of the pipeline's last stage.
  torch::Tensor loss_from_logits(const torch::Tensor& logits, const torch::Tensor& target);
  /// loss_from_logits: under tp the pipeline's last stage holds a vocabulary
  /// slice of the logits, which the default criterion would misread.
  torch::Tensor criterion(const torch::Tensor& output, const Batch& batch) override;
  InitSpec init_spec(const std::string& name, const torch::Tensor& param) const override;
  std::vector<ModelBlock> blocks() override;
  bool computes_through_ops() const override { return true; }

 protected:
  bool partial_grad(const std::string& name) const override;

 private:
  torch::Tensor embed(const torch::Tensor& tokens);
  torch::Tensor head(const torch::Tensor& x);

  ModelConfig config_;
  tensor_parallel::TensorParallelContext tp_;
  std::shared_ptr<torch::nn::Module> transformer_;
  tensor_parallel::VocabParallelEmbedding wte{nullptr};
  torch::nn::Embedding wpe{nullptr};
  torch::nn::ModuleList h;
  torch::nn::LayerNorm ln_f{nullptr};
};

struct ModelFamily;
/// The `gpt` family (registry.h): text in tokens, judged by perplexity.
const ModelFamily& gpt_family();

}  // namespace paratorch::models
