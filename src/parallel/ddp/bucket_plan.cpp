// src/parallel/ddp/bucket_plan.cpp — which parameters share a DDP bucket
// (ddp.h's plan_buckets): reverse registration order, as PyTorch fills them.
#include <paratorch/ddp.h>

namespace paratorch {

std::vector<BucketLayout> plan_buckets(const std::vector<torch::Tensor>& params, int64_t cap_bytes) {
  std::vector<BucketLayout> buckets;
  int64_t bytes = 0;
  torch::Device device = torch::kCPU;
  for (size_t k = params.size(); k-- > 0;) {
    const auto& p = params[k];
    if (!p.requires_grad()) continue;
    int64_t p_bytes = p.numel() * static_cast<int64_t>(p.element_size());
    bool start_new = buckets.empty() || buckets.back().dtype != p.scalar_type() ||
                     device != p.device() || (bytes > 0 && bytes + p_bytes > cap_bytes);
    if (start_new) {
      buckets.push_back(BucketLayout{{}, 0, p.scalar_type()});
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
