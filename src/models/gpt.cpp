// src/models/gpt.cpp — see gpt.h.
#include "models/gpt.h"

#include "ops/ops.h"
#include "models/registry.h"
#include "tensor_parallel/mappings.h"
#include <paratorch/errors.h>

#include <cmath>

namespace paratorch::models {

namespace tpl = tensor_parallel;

CausalSelfAttentionImpl::CausalSelfAttentionImpl(int d, int heads, const tpl::TensorParallelContext& tp)
    : n_heads(heads / tp.size()) {
  // q, k and v are split part by part, so this rank's columns are whole heads.
  c_attn = register_module("c_attn", tpl::ColumnParallelLinear(d, 3 * d, tp, true, false, /*parts=*/3));
  c_proj = register_module("c_proj", tpl::RowParallelLinear(d, d, tp));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x) {
  auto qkv = c_attn(x);  // [B, T, 3 * C/tp]: the whole sequence even under SP
  const int64_t B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3, hd = C / n_heads;
  auto parts = qkv.split(C, /*dim=*/2);
  // [B, T, C] -> [B * n_heads, T, hd]
  auto heads = [&](const torch::Tensor& t) {
    return t.view({B, T, n_heads, hd}).transpose(1, 2).reshape({B * n_heads, T, hd});
  };
  auto q = heads(parts[0]), k = heads(parts[1]), v = heads(parts[2]);
  // softmax(q k^T / sqrt(hd)) with future positions masked (causal). One
  // baddbmm computes mask + scale * q k^T: it replaces a separate scaling
  // and masked_fill over the [B * n_heads, T, T] scores, forward and backward.
  auto mask = torch::full({T, T}, -std::numeric_limits<float>::infinity(), x.options()).triu(1);
  auto att = ops::softmax(
      ops::baddbmm(mask, q, k.transpose(1, 2), /*beta=*/1, /*alpha=*/1.0 / std::sqrt(static_cast<double>(hd))), -1);
  auto y = ops::bmm(att, v).view({B, n_heads, T, hd}).transpose(1, 2).contiguous().view({B, T, C});
  return c_proj(y);
}

GptMlpImpl::GptMlpImpl(int d, const tpl::TensorParallelContext& tp) {
  c_fc = register_module("c_fc", tpl::ColumnParallelLinear(d, 4 * d, tp));
  c_proj = register_module("c_proj", tpl::RowParallelLinear(4 * d, d, tp));
}

torch::Tensor GptMlpImpl::forward(const torch::Tensor& x) {
  return c_proj(ops::gelu(c_fc(x), "tanh"));
}

GptBlockImpl::GptBlockImpl(int d, int heads, const tpl::TensorParallelContext& tp) {
  ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  attn = register_module("attn", CausalSelfAttention(d, heads, tp));
  ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d})));
  mlp = register_module("mlp", GptMlp(d, tp));
}

torch::Tensor GptBlockImpl::forward(const torch::Tensor& x) {
  auto y = x + attn(ops::layer_norm(ln_1, x));
  return y + mlp(ops::layer_norm(ln_2, y));
}

void Gpt::check_tensor_parallel(const ModelConfig& c, int tp, bool sequence_parallel) {
  if (tp <= 1) return;
  tpl::require_divisible("ModelConfig::n_heads", c.n_heads, tp);
  tpl::require_divisible("4 * ModelConfig::d_model (MLP hidden size)", 4 * static_cast<int64_t>(c.d_model), tp);
  tpl::require_divisible("ModelConfig::vocab_size", c.vocab_size, tp);
  if (sequence_parallel) tpl::require_divisible("ModelConfig::seq_len (sequence parallelism)", c.seq_len, tp);
}

Gpt::Gpt(const ModelConfig& c, const tpl::TensorParallelContext& tp) : config_(c), tp_(tp) {
  check_tensor_parallel(c, tp.size(), tp.sp());
  transformer_ = register_module("transformer", std::make_shared<torch::nn::Module>());
  wte = transformer_->register_module("wte", tpl::VocabParallelEmbedding(c.vocab_size, c.d_model, tp));
  wpe = transformer_->register_module("wpe", torch::nn::Embedding(c.seq_len, c.d_model));
  h = transformer_->register_module("h", torch::nn::ModuleList());
  for (int i = 0; i < c.n_layers; ++i) h->push_back(GptBlock(c.d_model, c.n_heads, tp));
  ln_f = transformer_->register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model})));
  // lm_head is tied to wte (no parameter of its own), as in GPT-2.
}

// Token + position embeddings. Under SP the vocab-parallel partial sums are
// reduce-scattered along the sequence and each rank adds the positions of
// its slice, so wpe's gradient is partial (partial_grad).
torch::Tensor Gpt::embed(const torch::Tensor& tokens) {
  const int64_t T = tokens.size(1);
  if (T > config_.seq_len)
    throw UsageError("paratorch: gpt input of " + std::to_string(T) + " tokens exceeds seq_len " +
                     std::to_string(config_.seq_len));
  auto longs = torch::TensorOptions().dtype(torch::kLong).device(tokens.device());
  if (!tp_.sp()) return wte(tokens) + wpe(torch::arange(T, longs));
  if (T % tp_.size() != 0)
    throw UsageError("paratorch: gpt input of " + std::to_string(T) + " tokens does not split over tp = " +
                     std::to_string(tp_.size()) + " (sequence parallelism)");
  const int64_t local = T / tp_.size(), first = tp_.rank() * local;
  return tpl::reduce_scatter_to_sequence(wte->forward_partial(tokens), tp_) +
         wpe(torch::arange(first, first + local, longs));
}

// ln_f and the output projection tied to wte: this rank's vocabulary slice.
torch::Tensor Gpt::head(const torch::Tensor& x) {
  auto y = ops::layer_norm(ln_f, x);
  y = tp_.sp() ? tpl::gather_from_sequence(y, tp_) : tpl::copy_to_tp(y, tp_);
  return ops::matmul(y, wte->weight.t());
}

torch::Tensor Gpt::forward(const torch::Tensor& input) {
  auto x = embed(input);
  for (const auto& block : *h) x = block->as<GptBlock>()->forward(x);
  return head(x);
}

// embed, transformer.h.0 .. h.{L-1}, head (ln_f + the tied output projection).
std::vector<ModelBlock> Gpt::blocks() {
  std::vector<ModelBlock> out;
  out.push_back(make_block("embed", {"transformer.wte.", "transformer.wpe."},
                           [this](const torch::Tensor& tokens) { return embed(tokens); }));
  for (size_t i = 0; i < h->size(); ++i) {
    const std::string name = "transformer.h." + std::to_string(i);
    auto block = h[i]->as<GptBlock>();
    out.push_back(make_block(name, {name + "."}, [block](const torch::Tensor& x) { return block->forward(x); }));
  }
  out.push_back(make_block("head", {"transformer.ln_f."}, [this](const torch::Tensor& x) { return head(x); }));
  out.back().shared = {"transformer.wte.weight"};
  return out;
}

torch::Tensor Gpt::loss_from_logits(const torch::Tensor& logits, const torch::Tensor& target) {
  if (!tp_.active())
    return torch::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), target.reshape({-1}));
  return tpl::vocab_parallel_cross_entropy(logits.reshape({-1, logits.size(-1)}), target.reshape({-1}), tp_).mean();
}

torch::Tensor Gpt::loss(const Batch& batch) { return loss_from_logits(forward(batch.input), batch.target); }

torch::Tensor Gpt::criterion(const torch::Tensor& output, const Batch& batch) {
  return loss_from_logits(output, batch.target);
}

bool Gpt::partial_grad(const std::string& name) const {
  // Under SP, LayerNorms and the position embedding see one slice of the
  // sequence per rank.
  return tp_.sp() && (name.find(".ln_") != std::string::npos || name.find("ln_f") != std::string::npos ||
                      name.find("wpe") != std::string::npos);
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


namespace {

void validate_gpt(const ModelConfig& c) {
  require_model_size("n_heads", c.n_heads);
  require_model_size("seq_len", c.seq_len);
  require_model_size("vocab_size", c.vocab_size);
  if (c.d_model % c.n_heads != 0)
    throw UsageError("paratorch: ModelConfig::d_model = " + std::to_string(c.d_model) +
                     " must be divisible by n_heads = " + std::to_string(c.n_heads));
}

// Activations of a transformer layer kept for backward, s*b*h*(34 + 5*a*s/h)
// bytes in 16 bit (Korthikanti et al. 2022, "Reducing Activation
// Recomputation in Large Transformer Models", §4.1), scaled to the element
// size. Under ZeRO-3 only each layer's input stays, plus one layer at a time
// in backward; the logits and their softmax come on top.
double gpt_activation_bytes(const ModelConfig& m, const ActivationShape& shape) {
  const double b = shape.micro_batch, c = shape.element_bytes;
  const double h = m.d_model, layers = m.n_layers;
  const double s = m.seq_len, a = m.n_heads;
  const double per_layer = s * b * h * (34 + 5 * a * s / h) * c / 2;
  double bytes = shape.zero_stage == 3 ? layers * s * b * h * c + per_layer : layers * per_layer;
  bytes += s * b * m.vocab_size * c * 2;  // logits and their softmax
  return bytes;
}

ModelFamily make_gpt_family() {
  ModelFamily f;
  f.name = "gpt";
  f.input = ModelInput::kTokens;
  f.throughput_unit = "tokens/s";
  f.metric_key = "val_perplexity";
  f.text_sample = true;
  f.verify_source = "synthetic";
  f.items_per_sample = [](const ModelConfig& c) { return static_cast<int64_t>(c.seq_len); };
  f.metric = [](double loss, double) { return std::exp(loss); };
  f.validate = validate_gpt;
  f.check_tensor_parallel = Gpt::check_tensor_parallel;
  f.make = [](const ModelConfig& c, const tpl::TensorParallelContext& tp) { return std::make_shared<Gpt>(c, tp); };
  f.activation_bytes = gpt_activation_bytes;
  f.small_sizes = [](ModelConfig& c) {
    c.n_layers = 2; c.d_model = 64; c.n_heads = 4; c.seq_len = 32; c.vocab_size = 256;
  };
  return f;
}

}  // namespace

const ModelFamily& gpt_family() {
  static const ModelFamily family = make_gpt_family();
  return family;
}

}  // namespace paratorch::models
