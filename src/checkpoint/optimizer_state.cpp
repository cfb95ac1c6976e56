// src/checkpoint/optimizer_state.cpp — torch::optim state by parameter name
// (paratorch/checkpoint.h). libtorch keys an optimizer's state by the
// address of each parameter's TensorImpl, which means nothing in another
// process; checkpoints need names. Each supported optimizer kind lists its
// per-parameter state fields, read and rebuilt through its ParamState class.
#include <paratorch/checkpoint.h>
#include <paratorch/compat.h>
#include <paratorch/errors.h>

#include <memory>
#include <vector>

namespace paratorch {
namespace {

using Fields = std::map<std::string, torch::Tensor>;
using torch::optim::OptimizerParamState;

/// One optimizer kind: how its per-parameter state becomes named tensors and back.
struct Kind {
  const char* name;
  std::function<bool(const torch::optim::Optimizer&)> is;
  std::function<Fields(const OptimizerParamState&)> read;
  std::function<std::unique_ptr<OptimizerParamState>(const Fields&)> build;
};

torch::Tensor step_tensor(int64_t step) { return torch::tensor({step}, torch::kLong); }

int64_t step_of(const Fields& f) { return f.count("step") ? f.at("step").item<int64_t>() : 0; }

torch::Tensor field(const Fields& f, const char* name) {
  auto it = f.find(name);
  return it == f.end() ? torch::Tensor() : it->second.clone();
}

void put(Fields& f, const char* name, const torch::Tensor& t) {
  if (t.defined()) f[name] = t.detach().to(torch::kCPU).clone();
}

// Adam and AdamW keep the same fields under different state classes.
template <typename Optim, typename State>
Kind adam_like(const char* name) {
  return {name, [](const torch::optim::Optimizer& o) { return dynamic_cast<const Optim*>(&o) != nullptr; },
          [](const OptimizerParamState& base) {
            const auto& s = static_cast<const State&>(base);
            Fields f{{"step", step_tensor(s.step())}};
            put(f, "exp_avg", s.exp_avg());
            put(f, "exp_avg_sq", s.exp_avg_sq());
            put(f, "max_exp_avg_sq", s.max_exp_avg_sq());
            return f;
          },
          [](const Fields& f) {
            auto s = std::make_unique<State>();
            s->step(step_of(f));
            s->exp_avg(field(f, "exp_avg"));
            s->exp_avg_sq(field(f, "exp_avg_sq"));
            if (f.count("max_exp_avg_sq")) s->max_exp_avg_sq(field(f, "max_exp_avg_sq"));
            return std::unique_ptr<OptimizerParamState>(std::move(s));
          }};
}

const std::vector<Kind>& kinds() {
  static const std::vector<Kind> all = {
      adam_like<torch::optim::AdamW, torch::optim::AdamWParamState>("AdamW"),
      adam_like<torch::optim::Adam, torch::optim::AdamParamState>("Adam"),
      {"SGD", [](const torch::optim::Optimizer& o) { return dynamic_cast<const torch::optim::SGD*>(&o) != nullptr; },
       [](const OptimizerParamState& base) {
         Fields f;
         put(f, "momentum_buffer", static_cast<const torch::optim::SGDParamState&>(base).momentum_buffer());
         return f;
       },
       [](const Fields& f) {
         auto s = std::make_unique<torch::optim::SGDParamState>();
         s->momentum_buffer(field(f, "momentum_buffer"));
         return std::unique_ptr<OptimizerParamState>(std::move(s));
       }},
      {"Adagrad",
       [](const torch::optim::Optimizer& o) { return dynamic_cast<const torch::optim::Adagrad*>(&o) != nullptr; },
       [](const OptimizerParamState& base) {
         const auto& s = static_cast<const torch::optim::AdagradParamState&>(base);
         Fields f{{"step", step_tensor(s.step())}};
         put(f, "sum", s.sum());
         return f;
       },
       [](const Fields& f) {
         auto s = std::make_unique<torch::optim::AdagradParamState>();
         s->step(step_of(f));
         s->sum(field(f, "sum"));
         return std::unique_ptr<OptimizerParamState>(std::move(s));
       }},
      {"RMSprop",
       [](const torch::optim::Optimizer& o) { return dynamic_cast<const torch::optim::RMSprop*>(&o) != nullptr; },
       [](const OptimizerParamState& base) {
         const auto& s = static_cast<const torch::optim::RMSpropParamState&>(base);
         Fields f{{"step", step_tensor(s.step())}};
         put(f, "square_avg", s.square_avg());
         put(f, "momentum_buffer", s.momentum_buffer());
         put(f, "grad_avg", s.grad_avg());
         return f;
       },
       [](const Fields& f) {
         auto s = std::make_unique<torch::optim::RMSpropParamState>();
         s->step(step_of(f));
         s->square_avg(field(f, "square_avg"));
         if (f.count("momentum_buffer")) s->momentum_buffer(field(f, "momentum_buffer"));
         if (f.count("grad_avg")) s->grad_avg(field(f, "grad_avg"));
         return std::unique_ptr<OptimizerParamState>(std::move(s));
       }},
  };
  return all;
}

const Kind& kind_of(const torch::optim::Optimizer& optimizer) {
  for (const auto& k : kinds())
    if (k.is(optimizer)) return k;
  throw UsageError("paratorch: optimizer_state_by_name supports torch::optim SGD, Adam, AdamW, Adagrad and RMSprop; "
                   "save other optimizers' state yourself, by parameter name");
}

/// The parameters of every group of `optimizer`, by the name `module` gives them.
std::vector<std::pair<std::string, torch::Tensor>> named_optimizer_params(const torch::optim::Optimizer& optimizer,
                                                                          const torch::nn::Module& module) {
  std::map<const void*, std::string> name_of;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    name_of[item.value().unsafeGetTensorImpl()] = item.key();
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& group : optimizer.param_groups())
    for (const auto& p : group.params()) {
      auto it = name_of.find(p.unsafeGetTensorImpl());
      if (it == name_of.end())
        throw UsageError("paratorch: the optimizer holds a parameter of shape " + c10::str(p.sizes()) +
                         " that the module does not have; pass the module whose parameters the optimizer updates");
      out.emplace_back(it->second, p);
    }
  return out;
}

}  // namespace

std::map<std::string, torch::Tensor> optimizer_state_by_name(const torch::optim::Optimizer& optimizer,
                                                             const torch::nn::Module& module) {
  const Kind& kind = kind_of(optimizer);
  auto& states = const_cast<torch::optim::Optimizer&>(optimizer).state();
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, p] : named_optimizer_params(optimizer, module)) {
    auto it = states.find(compat::optimizer_state_key(p));
    if (it == states.end()) continue;  // no step taken with a gradient for it yet
    for (const auto& [field_name, t] : kind.read(*it->second)) out[name + "." + field_name] = t;
  }
  return out;
}

void load_optimizer_state(torch::optim::Optimizer& optimizer, const torch::nn::Module& module,
                          const std::map<std::string, torch::Tensor>& state) {
  const Kind& kind = kind_of(optimizer);
  for (const auto& [name, p] : named_optimizer_params(optimizer, module)) {
    Fields fields;
    const std::string prefix = name + ".";
    for (auto it = state.lower_bound(prefix); it != state.end() && it->first.compare(0, prefix.size(), prefix) == 0;
         ++it) {
      const std::string field_name = it->first.substr(prefix.size());
      if (field_name.find('.') != std::string::npos) continue;  // a deeper parameter's ("a.b" vs "a")
      if (field_name != "step" && !it->second.sizes().equals(p.sizes()))
        throw RuntimeFailure("paratorch: optimizer state '" + it->first + "' has shape " +
                             c10::str(it->second.sizes()) + ", parameter '" + name + "' has " + c10::str(p.sizes()));
      fields[field_name] = field_name == "step" ? it->second : it->second.to(p.options());
    }
    if (fields.empty()) continue;
    optimizer.state()[compat::optimizer_state_key(p)] = kind.build(fields);
  }
}

}  // namespace paratorch
