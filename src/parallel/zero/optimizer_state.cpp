// src/parallel/zero/optimizer_state.cpp — see optimizer_state.h. One small
// adapter per libtorch optimizer: its ParamState's tensors by kind.
#include "parallel/zero/optimizer_state.h"

#include <paratorch/compat.h>
#include <paratorch/errors.h>

#include <memory>

namespace paratorch::zero {

namespace {

namespace topt = torch::optim;  // (unique name: unity builds share anonymous namespaces)

std::string key_of(const torch::Tensor& tensor) { return compat::optimizer_state_key(tensor); }

// Adam and AdamW share their state's layout (Kingma & Ba, 2015;
// Loshchilov & Hutter, 2019), not a class.
template <class State, class Options>
std::vector<std::string> adam_kinds(const topt::Optimizer& o) {
  const auto& options = static_cast<const Options&>(o.param_groups().at(0).options());
  std::vector<std::string> kinds{"exp_avg", "exp_avg_sq"};
  if (options.amsgrad()) kinds.push_back("max_exp_avg_sq");
  return kinds;
}

template <class State>
std::map<std::string, torch::Tensor> adam_read(const State& s) {
  std::map<std::string, torch::Tensor> out{{"exp_avg", s.exp_avg()}, {"exp_avg_sq", s.exp_avg_sq()}};
  if (s.max_exp_avg_sq().defined()) out["max_exp_avg_sq"] = s.max_exp_avg_sq();
  return out;
}

template <class State>
std::unique_ptr<topt::OptimizerParamState> adam_write(const std::map<std::string, torch::Tensor>& k, int64_t step) {
  auto s = std::make_unique<State>();
  s->step(step);
  s->exp_avg(k.at("exp_avg"));
  s->exp_avg_sq(k.at("exp_avg_sq"));
  if (k.count("max_exp_avg_sq")) s->max_exp_avg_sq(k.at("max_exp_avg_sq"));
  return s;
}

std::string type_error(const topt::Optimizer& o) {
  return std::string("paratorch: cannot save or load the state of optimizer type ") + typeid(o).name() +
         " by parameter name; use torch::optim::AdamW, Adam, SGD, Adagrad or RMSprop (or save its state yourself)";
}

}  // namespace

std::vector<std::string> state_kinds(const topt::Optimizer& o) {
  if (dynamic_cast<const topt::AdamW*>(&o)) return adam_kinds<topt::AdamWParamState, topt::AdamWOptions>(o);
  if (dynamic_cast<const topt::Adam*>(&o)) return adam_kinds<topt::AdamParamState, topt::AdamOptions>(o);
  if (dynamic_cast<const topt::SGD*>(&o)) {
    const auto& options = static_cast<const topt::SGDOptions&>(o.param_groups().at(0).options());
    return options.momentum() != 0 ? std::vector<std::string>{"momentum_buffer"} : std::vector<std::string>{};
  }
  if (dynamic_cast<const topt::Adagrad*>(&o)) return {"sum"};
  if (dynamic_cast<const topt::RMSprop*>(&o)) {
    const auto& options = static_cast<const topt::RMSpropOptions&>(o.param_groups().at(0).options());
    std::vector<std::string> kinds{"square_avg"};
    if (options.momentum() > 0) kinds.push_back("momentum_buffer");
    if (options.centered()) kinds.push_back("grad_avg");
    return kinds;
  }
  throw UsageError(type_error(o));
}

std::map<std::string, torch::Tensor> read_state(const topt::Optimizer& o, const torch::Tensor& tensor) {
  auto it = o.state().find(key_of(tensor));
  if (it == o.state().end()) return {};
  const auto* state = it->second.get();
  if (auto* s = dynamic_cast<const topt::AdamWParamState*>(state)) return adam_read(*s);
  if (auto* s = dynamic_cast<const topt::AdamParamState*>(state)) return adam_read(*s);
  if (auto* s = dynamic_cast<const topt::SGDParamState*>(state)) return {{"momentum_buffer", s->momentum_buffer()}};
  if (auto* s = dynamic_cast<const topt::AdagradParamState*>(state)) return {{"sum", s->sum()}};
  if (auto* s = dynamic_cast<const topt::RMSpropParamState*>(state)) {
    std::map<std::string, torch::Tensor> out{{"square_avg", s->square_avg()}};
    if (s->momentum_buffer().defined()) out["momentum_buffer"] = s->momentum_buffer();
    if (s->grad_avg().defined()) out["grad_avg"] = s->grad_avg();
    return out;
  }
  throw UsageError(type_error(o));
}

int64_t read_step(const topt::Optimizer& o, const torch::Tensor& tensor) {
  auto it = o.state().find(key_of(tensor));
  if (it == o.state().end()) return 0;
  const auto* state = it->second.get();
  if (auto* s = dynamic_cast<const topt::AdamWParamState*>(state)) return s->step();
  if (auto* s = dynamic_cast<const topt::AdamParamState*>(state)) return s->step();
  if (auto* s = dynamic_cast<const topt::AdagradParamState*>(state)) return s->step();
  if (auto* s = dynamic_cast<const topt::RMSpropParamState*>(state)) return s->step();
  return 0;
}

void write_state(topt::Optimizer& o, const torch::Tensor& tensor, const std::map<std::string, torch::Tensor>& k,
                 int64_t step) {
  std::unique_ptr<topt::OptimizerParamState> state;
  if (dynamic_cast<topt::AdamW*>(&o)) {
    state = adam_write<topt::AdamWParamState>(k, step);
  } else if (dynamic_cast<topt::Adam*>(&o)) {
    state = adam_write<topt::AdamParamState>(k, step);
  } else if (dynamic_cast<topt::SGD*>(&o)) {
    if (!k.count("momentum_buffer")) return;  // plain SGD keeps no state
    auto s = std::make_unique<topt::SGDParamState>();
    s->momentum_buffer(k.at("momentum_buffer"));
    state = std::move(s);
  } else if (dynamic_cast<topt::Adagrad*>(&o)) {
    auto s = std::make_unique<topt::AdagradParamState>();
    s->sum(k.at("sum"));
    s->step(step);
    state = std::move(s);
  } else if (dynamic_cast<topt::RMSprop*>(&o)) {
    auto s = std::make_unique<topt::RMSpropParamState>();
    s->square_avg(k.at("square_avg"));
    s->step(step);
    if (k.count("momentum_buffer")) s->momentum_buffer(k.at("momentum_buffer"));
    if (k.count("grad_avg")) s->grad_avg(k.at("grad_avg"));
    state = std::move(s);
  } else {
    throw UsageError(type_error(o));
  }
  o.state()[key_of(tensor)] = std::move(state);
}

void read_named_state(const torch::optim::Optimizer& optimizer, const torch::Tensor& tensor, const std::string& name,
                      std::map<std::string, torch::Tensor>& out) {
  const auto kinds = read_state(optimizer, tensor);
  if (kinds.empty()) return;  // no step taken with a gradient for it yet
  for (const auto& [kind, t] : kinds)
    if (t.defined()) out[name + "." + kind] = t.detach().to(torch::kCPU).clone();
  out[name + ".step"] = torch::tensor({read_step(optimizer, tensor)}, torch::kLong);
}

void write_named_state(torch::optim::Optimizer& optimizer, const torch::Tensor& tensor, const std::string& name,
                       const std::map<std::string, torch::Tensor>& state) {
  const auto kinds = state_kinds(optimizer);
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& kind : kinds) {
    auto it = state.find(name + "." + kind);
    if (it == state.end()) continue;
    if (!it->second.sizes().equals(tensor.sizes()))
      throw RuntimeFailure("paratorch: optimizer state '" + it->first + "' has shape " + c10::str(it->second.sizes()) +
                           ", parameter '" + name + "' has " + c10::str(tensor.sizes()));
    tensors[kind] = it->second.to(tensor.options()).clone();
  }
  if (tensors.empty()) return;  // it had no state when saved
  if (tensors.size() != kinds.size())
    throw RuntimeFailure("paratorch: optimizer state of '" + name + "' is incomplete: the optimizer keeps " +
                         std::to_string(kinds.size()) + " tensors per parameter, the checkpoint has " +
                         std::to_string(tensors.size()) + " (saved with other optimizer options?)");
  auto step = state.find(name + ".step");
  write_state(optimizer, tensor, tensors, step == state.end() ? 0 : step->second.item<int64_t>());
}

}  // namespace paratorch::zero
