// paratorch/compat.h — the one place where libtorch version differences live.
//
// paratorch builds against Debian's libtorch 1.13 (CPU) and libtorch 2.x
// (CUDA, from pip torch). Every API difference between the two is bridged
// here with TORCH_VERSION checks; nothing else in the tree tests versions.
//
/// Usage: call these where the two libtorch lines differ, and the code
/// means the same on both.
///
///   paratorch::compat::zero_grad_in_place(model->parameters());  // keeps DDP's bucket views
///   std::cout << "libtorch " << paratorch::compat::torch_version() << "\n";
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

#include <sstream>
#include <string>

#define PARATORCH_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||            \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace paratorch::compat {

/// Zeroes every parameter's gradient *in place*, keeping the gradient tensor
/// (and so any bucket view DDP placed there). libtorch 2.x's
/// Optimizer::zero_grad() defaults to set_to_none=true, 1.13 zeroes in place.
inline void zero_grad_in_place(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  for (const auto& p : params) {
    const auto& g = p.grad();
    if (g.defined()) const_cast<torch::Tensor&>(g).zero_();
  }
}

/// The key torch::optim::Optimizer::state() files parameter `p` under: its
/// TensorImpl's address as an ostream prints it (libtorch 1.13 spells it
/// c10::guts::to_string, 2.x c10::str; both print through an ostream).
inline std::string optimizer_state_key(const torch::Tensor& p) {
  std::ostringstream key;
  key << p.unsafeGetTensorImpl();
  return key.str();
}

/// "major.minor.patch" of the libtorch this binary was compiled against.
inline std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) +
         "." + std::to_string(TORCH_VERSION_PATCH);
}

}  // namespace paratorch::compat
