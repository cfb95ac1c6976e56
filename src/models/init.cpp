// src/models/init.cpp — see paratorch/init.h.
#include <paratorch/init.h>

#include <ATen/CPUGeneratorImpl.h>

namespace paratorch {

uint64_t derive_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a offset basis
  for (unsigned char c : name) {
    h ^= c;
    h *= 1099511628211ULL;  // FNV prime
  }
  // SplitMix64 finalizer over (h xor seed) spreads nearby seeds apart.
  uint64_t z = h ^ (seed + 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

torch::Generator generator_for(uint64_t seed, const std::string& name) {
  return at::make_generator<at::CPUGeneratorImpl>(derive_seed(seed, name));
}

torch::Tensor full_init(const InitSpec& spec, torch::IntArrayRef shape, uint64_t seed,
                        const std::string& name) {
  torch::NoGradGuard no_grad;
  auto t = torch::empty(shape, torch::kFloat);
  switch (spec.kind) {
    case InitSpec::Kind::kNormal: {
      auto gen = generator_for(seed, name);
      t.normal_(spec.a, spec.b, gen);
      break;
    }
    case InitSpec::Kind::kUniform: {
      auto gen = generator_for(seed, name);
      t.uniform_(spec.a, spec.b, gen);
      break;
    }
    case InitSpec::Kind::kConstant: t.fill_(spec.a); break;
  }
  return t;
}

void init_parameters(torch::nn::Module& module, uint64_t seed,
                     const std::function<InitSpec(const std::string&, const torch::Tensor&)>& spec_of) {
  torch::NoGradGuard no_grad;
  for (auto& item : module.named_parameters(true)) {
    auto& p = item.value();
    auto full = full_init(spec_of(item.key(), p), p.sizes(), seed, item.key());
    p.copy_(full.to(p.options()));
  }
}

}  // namespace paratorch
