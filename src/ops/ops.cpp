// src/ops/ops.cpp — see ops.h.
#include "ops/ops.h"

namespace paratorch::ops {
namespace {

// Whether this libtorch's CPU kernels lack Half for any operation below.
bool cpu_lacks_half_kernels() {
  static const bool lacks = [] {
    try {
      torch::NoGradGuard no_grad;
      auto x = torch::ones({2, 2}, torch::kHalf);
      torch::mm(x, x);
      torch::bmm(x.unsqueeze(0), x.unsqueeze(0));
      torch::layer_norm(x, {2});
      torch::gelu(x);
      torch::softmax(x, -1);
      return false;
    } catch (const c10::Error&) {
      return true;
    }
  }();
  return lacks;
}

bool emulated(const torch::Tensor& x) { return x.scalar_type() == torch::kHalf && fp16_is_emulated(x.device()); }

torch::Tensor widen(const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat) : t; }

torch::Tensor rounded(const torch::Tensor& t) { return t.to(torch::kHalf); }

}  // namespace

bool fp16_is_emulated(torch::Device device) { return device.is_cpu() && cpu_lacks_half_kernels(); }

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!emulated(x)) return torch::nn::functional::linear(x, weight, bias);
  return rounded(torch::nn::functional::linear(widen(x), widen(weight), widen(bias)));
}

torch::Tensor linear(const torch::nn::Linear& layer, const torch::Tensor& x) {
  return linear(x, layer->weight, layer->bias);
}

torch::Tensor layer_norm(const torch::nn::LayerNorm& layer, const torch::Tensor& x) {
  const auto& o = layer->options;  // what LayerNormImpl::forward computes
  if (!emulated(x)) return torch::layer_norm(x, o.normalized_shape(), layer->weight, layer->bias, o.eps());
  return rounded(torch::layer_norm(widen(x), o.normalized_shape(), widen(layer->weight), widen(layer->bias), o.eps()));
}

torch::Tensor gelu(const torch::Tensor& x, const std::string& approximate) {
  if (!emulated(x)) return torch::gelu(x, approximate);
  return rounded(torch::gelu(widen(x), approximate));
}

torch::Tensor softmax(const torch::Tensor& x, int64_t dim) {
  if (!emulated(x)) return torch::softmax(x, dim);
  return rounded(torch::softmax(widen(x), dim));
}

torch::Tensor baddbmm(const torch::Tensor& self, const torch::Tensor& a, const torch::Tensor& b, double beta,
                      double alpha) {
  if (!emulated(a)) return torch::baddbmm(self, a, b, beta, alpha);
  return rounded(torch::baddbmm(widen(self), widen(a), widen(b), beta, alpha));
}

torch::Tensor bmm(const torch::Tensor& a, const torch::Tensor& b) {
  if (!emulated(a)) return torch::bmm(a, b);
  return rounded(torch::bmm(widen(a), widen(b)));
}

torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b) {
  if (!emulated(a)) return torch::matmul(a, b);
  return rounded(torch::matmul(widen(a), widen(b)));
}

}  // namespace paratorch::ops
