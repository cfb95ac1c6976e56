// tests/ops/ops_test.cpp — ops/ops.h: fp32 and bf16 call libtorch
// unchanged; fp16 on a CPU without Half kernels computes in fp32 between fp16
// tensors, rounds outputs and gradients to fp16, and keeps fp16's range.
#include "ops/ops.h"

#include <gtest/gtest.h>

#include <limits>

namespace paratorch::ops {
namespace {

TEST(Ops, Fp32CallsLibtorchUnchanged) {
  torch::manual_seed(0);
  torch::nn::Linear fc(8, 4);
  torch::nn::LayerNorm ln(torch::nn::LayerNormOptions({8}));
  auto x = torch::randn({3, 8});
  EXPECT_TRUE(torch::equal(ops::linear(fc, x), fc(x)));
  EXPECT_TRUE(torch::equal(ops::layer_norm(ln, x), ln(x)));
  EXPECT_TRUE(torch::equal(ops::gelu(x, "tanh"), torch::gelu(x, "tanh")));
  EXPECT_TRUE(torch::equal(ops::softmax(x, -1), torch::softmax(x, -1)));
  auto a = torch::randn({2, 3, 5}), b = torch::randn({2, 5, 4}), c = torch::randn({3, 4});
  EXPECT_TRUE(torch::equal(ops::bmm(a, b), torch::bmm(a, b)));
  EXPECT_TRUE(torch::equal(ops::baddbmm(c, a, b, 1, 0.5), torch::baddbmm(c, a, b, 1, 0.5)));
  EXPECT_TRUE(torch::equal(ops::matmul(a, b), torch::matmul(a, b)));
}

// Each operation in fp16 returns fp16 close to the fp32 result of the same
// (fp16-representable) inputs: within a few fp16 ulps (2^-10 relative).
TEST(Ops, Fp16MatchesFp32WithinFp16Rounding) {
  torch::manual_seed(1);
  auto h = [](const torch::Tensor& t) { return t.to(torch::kHalf); };
  auto x = h(torch::randn({3, 8})), w = h(torch::randn({4, 8})), bias = h(torch::randn({4}));
  auto close = [](const torch::Tensor& half, const torch::Tensor& full, const char* what) {
    EXPECT_EQ(half.scalar_type(), torch::kHalf) << what;
    EXPECT_TRUE(torch::allclose(half.to(torch::kFloat), full, 4e-3, 4e-3)) << what;
  };
  auto f = [](const torch::Tensor& t) { return t.to(torch::kFloat); };
  close(ops::linear(x, w, bias), torch::nn::functional::linear(f(x), f(w), f(bias)), "linear");
  close(ops::gelu(x, "tanh"), torch::gelu(f(x), "tanh"), "gelu");
  close(ops::softmax(x, -1), torch::softmax(f(x), -1), "softmax");
  torch::nn::LayerNorm ln(torch::nn::LayerNormOptions({8}));
  ln->to(torch::kHalf);
  close(ops::layer_norm(ln, x), torch::layer_norm(f(x), {8}), "layer_norm");
  auto a = h(torch::randn({2, 3, 5})), b = h(torch::randn({2, 5, 4})), c = h(torch::randn({3, 4}));
  close(ops::bmm(a, b), torch::bmm(f(a), f(b)), "bmm");
  close(ops::baddbmm(c, a, b, 1, 0.5), torch::baddbmm(f(c), f(a), f(b), 1, 0.5), "baddbmm");
  close(ops::matmul(a, b), torch::matmul(f(a), f(b)), "matmul");
}

// Gradients reach fp16 parameters as fp16 tensors, and a product past fp16's
// largest value (65504) is inf, forward and backward — what the loss scaler
// must catch.
TEST(Ops, Fp16GradientsAreFp16AndOverflowToInf) {
  auto w = torch::full({2, 2}, 300.0, torch::kHalf).requires_grad_(true);
  auto x = torch::full({1, 2}, 300.0, torch::kHalf);
  auto y = ops::linear(x, w);  // 2 * 300 * 300 = 180000 > 65504
  EXPECT_TRUE(torch::isinf(y.to(torch::kFloat)).all().item<bool>());
  auto w2 = torch::ones({2, 2}, torch::kHalf).requires_grad_(true);
  auto out = ops::linear(torch::full({1, 2}, 1.0, torch::kHalf), w2);
  (out.to(torch::kFloat).sum() * 1e5).backward();  // d/dw = 1e5 per element, past fp16's range
  ASSERT_TRUE(w2.grad().defined());
  EXPECT_EQ(w2.grad().scalar_type(), torch::kHalf);
  EXPECT_TRUE(torch::isinf(w2.grad().to(torch::kFloat)).all().item<bool>());
}

TEST(Ops, Fp16IsEmulatedOnlyOnCpu) {
  if (torch::cuda::is_available()) EXPECT_FALSE(ops::fp16_is_emulated(torch::Device(torch::kCUDA, 0)));
  // On CPU the answer is this libtorch's: emulated exactly when a Half matmul is missing.
  bool has_half_matmul = true;
  try {
    torch::NoGradGuard no_grad;
    auto x = torch::ones({2, 2}, torch::kHalf);
    torch::mm(x, x);
  } catch (const c10::Error&) {
    has_half_matmul = false;
  }
  if (!has_half_matmul) EXPECT_TRUE(ops::fp16_is_emulated(torch::kCPU));
}

}  // namespace
}  // namespace paratorch::ops
