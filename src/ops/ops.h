// src/ops/ops.h — the arithmetic the bundled models and the tensor-parallel
// layers compute, with an fp16 path for CPU builds of libtorch that have no
// Half kernels. Below both of them, so neither folder depends on the other
// for it.
//
// libtorch 1.13's CPU kernels lack Half for matrix products, layer norm, GELU
// and softmax ("addmm_impl_cpu_" not implemented for 'Half'). Where they are
// missing (probed once, not guessed from the version), an fp16 tensor on CPU
// goes through each of these operations the way a GPU's fp16 kernels treat
// it: inputs widened to fp32, the arithmetic done in fp32 (PyTorch's CUDA
// kernels compute Half in float, and cuBLAS accumulates fp16 products in
// fp32), the result rounded back to fp16. Autograd's casts round every
// gradient back to fp16 at the same boundaries, so parameters, activations
// and gradients are fp16 tensors with fp16's range — an overflow past 65504
// is inf, which is what the dynamic loss scaler (parallel/zero/loss_scaler.h) guards.
// Every other dtype or device, and fp16 where the kernels exist, calls the
// libtorch operation directly.
//
//   auto h = ops::gelu(ops::linear(fc1, ops::layer_norm(ln, x)));
#pragma once
#include <torch/torch.h>

#include <string>

namespace paratorch::ops {

/// True when fp16 on `device` runs through the fp32 path above (CPU without Half kernels).
bool fp16_is_emulated(torch::Device device);

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {});
torch::Tensor linear(const torch::nn::Linear& layer, const torch::Tensor& x);
torch::Tensor layer_norm(const torch::nn::LayerNorm& layer, const torch::Tensor& x);
torch::Tensor gelu(const torch::Tensor& x, const std::string& approximate = "none");
torch::Tensor softmax(const torch::Tensor& x, int64_t dim);
/// beta * self + alpha * (a @ b), batched.
torch::Tensor baddbmm(const torch::Tensor& self, const torch::Tensor& a, const torch::Tensor& b, double beta,
                      double alpha);
torch::Tensor bmm(const torch::Tensor& a, const torch::Tensor& b);
torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace paratorch::ops
