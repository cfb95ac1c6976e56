// src/parallel/ddp/buffer_pool.cpp — see buffer_pool.h.
#include "parallel/ddp/buffer_pool.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace paratorch::zero {

torch::Tensor BufferPool::take(int64_t numel, torch::ScalarType dtype, torch::Device device) {
  for (size_t i = 0; i < free_.size(); ++i) {
    const auto& b = free_[i];
    if (b.numel() == numel && b.scalar_type() == dtype && b.device() == device) {
      auto out = std::move(free_[i]);
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
      return out;
    }
  }
  return torch::empty({numel}, torch::TensorOptions().dtype(dtype).device(device));
}

void BufferPool::give(torch::Tensor buffer) {
  if (buffer.defined()) free_.push_back(std::move(buffer));
}

int64_t BufferPool::idle_bytes() const {
  int64_t n = 0;
  for (const auto& b : free_) n += static_cast<int64_t>(b.nbytes());
  return n;
}

void return_free_memory_to_os() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace paratorch::zero
