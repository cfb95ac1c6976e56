// src/parallel/ddp/bucket_plan.cpp — which parameters share a DDP bucket
// (ddp.h's plan_buckets): reverse registration order, as PyTorch fills them.
#include <paratorch/ddp.h>

namespace paratorch {

std::vector<BucketLayout> plan_buckets(const std::vector<torch::Tensor>& params, int64_t cap_bytes,
                                       std::optional<torch::ScalarType> gradient_dtype) {
  std::vector<BucketLayout> buckets;
  int64_t bytes = 0;
  torch::Device device = torch::kCPU;
  for (size_t k = params.size(); k-- > 0;) {
    const auto& p = params[k];
    if (!p.requires_grad()) continue;
    const torch::ScalarType dtype = gradient_dtype.value_or(p.scalar_type());
    int64_t p_bytes = p.numel() * static_cast<int64_t>(c10::elementSize(dtype));
    bool start_new = buckets.empty() || buckets.back().dtype != dtype || device != p.device() ||
                     (bytes > 0 && bytes + p_bytes > cap_bytes);
    if (start_new) {
      buckets.push_back(BucketLayout{{}, 0, dtype});
      bytes = 0;
      device = p.device();
    }
    buckets.back().params.push_back(k);
    buckets.back().numel += p.numel();
    bytes += p_bytes;
  }
  return buckets;
}

}  // namespace paratorch
