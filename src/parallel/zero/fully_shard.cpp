// src/parallel/zero/fully_shard.cpp — fully_shard (paratorch/zero.h): finding
// the units, sharding their parameters, putting FsdpUnits in their place,
// and the way back to full named parameters.
//
// libtorch modules have no forward hooks and forward is not virtual, so a
// unit can only be intercepted where its caller dispatches dynamically: a
// torch::nn::Sequential calls its children through AnyModule slots. Each
// unit's slot (and its registered child entry) is replaced by an FsdpUnit
// that wraps the original AnyModule; the module's own forward then runs the
// sharded units unchanged. A ModuleList's element is replaced the same way;
// its caller runs it through forward_unit<M>() (the FsdpUnit once sharded),
// and the unit computes through FullyShardOptions::unit_forward. The unit list must cover every parameter: one
// outside every unit would be neither sharded nor reduced. A tensor that two
// units share (tied weights) is sharded once, in the shared unit (fsdp_state.h).
#include "parallel/zero/fsdp_state.h"

#include "parallel/ddp/reducer.h"
#include "parallel/zero/optimizer_state.h"
#include "parallel/zero/sharded_optimizer.h"
#include <paratorch/errors.h>
#include <paratorch/grad_clip.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

namespace paratorch {

void FullyShardOptions::validate() const { mixed_precision.validate(); }

namespace {

using ModulePtr = std::shared_ptr<torch::nn::Module>;

std::string list_of(const std::vector<std::string>& names, size_t limit = 8) {
  std::ostringstream out;
  for (size_t i = 0; i < names.size() && i < limit; ++i) out << (i ? ", " : "") << "'" << names[i] << "'";
  if (names.size() > limit) out << ", ... (" << names.size() << " in all)";
  return out.str();
}

// The child `name` (dotted) of `root`, or null.
ModulePtr find_descendant(const ModulePtr& root, const std::string& name) {
  for (const auto& item : root->named_modules("", /*include_self=*/false))
    if (item.key() == name) return item.value();
  return nullptr;
}

std::vector<std::string> unit_names(const ModulePtr& module, const FullyShardOptions& options) {
  if (!options.units.empty()) return options.units;
  std::vector<std::string> out;
  for (const auto& item : module->named_children()) out.push_back(item.key());
  return out;
}

// UsageError for a name that is unknown, repeated or inside another unit.
void check_unit_names(const ModulePtr& module, const std::vector<std::string>& names) {
  std::set<std::string> seen;
  for (const auto& name : names) {
    if (!seen.insert(name).second)
      throw UsageError("paratorch: FullyShardOptions::units names '" + name + "' twice; name each unit once");
    if (!find_descendant(module, name)) {
      std::vector<std::string> children;
      for (const auto& item : module->named_children()) children.push_back(item.key());
      throw UsageError("paratorch: FullyShardOptions::units names '" + name +
                       "', which is not a submodule of the module (its children: " + list_of(children) + ")");
    }
  }
  for (const auto& a : names)
    for (const auto& b : names)
      if (a != b && b.rfind(a + ".", 0) == 0)
        throw UsageError("paratorch: FullyShardOptions::units names '" + b + "' inside unit '" + a +
                         "'; units must not overlap");
}

// UsageError listing the parameters no unit holds.
void check_coverage(const ModulePtr& module, const std::vector<std::string>& names) {
  std::vector<std::string> missed;
  for (const auto& item : module->named_parameters()) {
    bool covered = false;
    for (const auto& unit : names) covered = covered || item.key().rfind(unit + ".", 0) == 0;
    if (!covered) missed.push_back(item.key());
  }
  if (!missed.empty())
    throw UsageError("paratorch: FullyShardOptions::units misses parameter(s) " + list_of(missed) +
                     "; add the submodules that hold them to the units (a parameter of the root module itself "
                     "must move into a child)");
}

using Named = std::vector<std::pair<std::string, torch::Tensor>>;

// Each unit's parameters under their full names.
std::vector<Named> named_parameters_of(const ModulePtr& module, const std::vector<std::string>& names) {
  std::vector<Named> out;
  for (const auto& name : names) {
    Named unit;
    for (const auto& item : find_descendant(module, name)->named_parameters())
      unit.emplace_back(name + "." + item.key(), item.value());
    out.push_back(std::move(unit));
  }
  return out;
}

// Tensors used by two units or more (tied weights), first-seen order, under
// their first name; the other names become aliases.
Named tied_tensors(const std::vector<Named>& units, std::map<std::string, std::string>* aliases) {
  std::map<const void*, std::set<size_t>> users;
  for (size_t u = 0; u < units.size(); ++u)
    for (const auto& [name, t] : units[u]) users[t.unsafeGetTensorImpl()].insert(u);
  Named tied;
  std::map<const void*, std::string> first;
  for (const auto& unit : units)
    for (const auto& [name, t] : unit) {
      const void* impl = t.unsafeGetTensorImpl();
      if (users[impl].size() < 2) continue;
      auto [it, fresh] = first.emplace(impl, name);
      if (fresh)
        tied.emplace_back(name, t);
      else if (it->second != name)
        (*aliases)[name] = it->second;
    }
  return tied;
}

// Splits a unit's parameters into its own and the tied ones it uses
// (indices into `tied`, each once).
Named own_parameters(const Named& unit, const Named& tied, std::vector<size_t>* shared_members) {
  Named own;
  for (const auto& [name, t] : unit) {
    size_t k = 0;
    while (k < tied.size() && !tied[k].second.is_same(t)) ++k;
    if (k == tied.size())
      own.emplace_back(name, t);
    else if (std::find(shared_members->begin(), shared_members->end(), k) == shared_members->end())
      shared_members->push_back(k);
  }
  return own;
}

// Where unit `name` sits: its slot in the Sequential or ModuleList holding
// it, which the FsdpUnit takes over (the caller dispatches through the slot).
struct UnitSlot {
  torch::nn::SequentialImpl* sequential = nullptr;
  torch::nn::ModuleListImpl* list = nullptr;
  size_t index = 0;
  ModulePtr original;
};

UnitSlot unit_slot(const ModulePtr& root, const std::string& name, const FullyShardOptions& options) {
  const auto dot = name.rfind('.');
  const auto parent = dot == std::string::npos ? root : find_descendant(root, name.substr(0, dot));
  UnitSlot slot;
  slot.original = find_descendant(root, name);
  if ((slot.sequential = dynamic_cast<torch::nn::SequentialImpl*>(parent.get())))
    for (; slot.index < slot.sequential->size(); ++slot.index)
      if (slot.sequential->ptr(slot.index) == slot.original) return slot;
  if ((slot.list = dynamic_cast<torch::nn::ModuleListImpl*>(parent.get()))) {
    if (!options.unit_forward)
      throw UsageError("paratorch: FullyShardOptions::units names '" + name +
                       "', an element of a torch::nn::ModuleList, which cannot call it by itself; set "
                       "FullyShardOptions::unit_forward (e.g. forward_as<BlockImpl>()) so its FsdpUnit can");
    for (; slot.index < slot.list->size(); ++slot.index)
      if (slot.list->ptr(slot.index) == slot.original) return slot;
  }
  throw UsageError("paratorch: FullyShardOptions::units names '" + name +
                   "', which is not a child of a torch::nn::Sequential or ModuleList; fully_shard replaces each "
                   "unit in its container (modules have no forward hooks), so keep the units in one");
}

// The unit's computation: its Sequential slot's AnyModule, or unit_forward.
std::function<torch::Tensor(const torch::Tensor&)> unit_computation(const UnitSlot& slot,
                                                                    const FullyShardOptions& options) {
  if (slot.sequential)
    return [module = *(slot.sequential->begin() + static_cast<std::ptrdiff_t>(slot.index))](
               const torch::Tensor& x) mutable { return module.forward(x); };
  return [original = slot.original, forward = options.unit_forward](const torch::Tensor& x) {
    return forward(*original, x);
  };
}

// Puts `wrapper` in the unit's slot and its parent's registry.
void install_unit(const UnitSlot& slot, const std::string& name, const FsdpUnit& wrapper) {
  const auto dot = name.rfind('.');
  const std::string key = dot == std::string::npos ? name : name.substr(dot + 1);
  const auto at = static_cast<std::ptrdiff_t>(slot.index);
  if (slot.sequential) {
    *(slot.sequential->begin() + at) = torch::nn::AnyModule(wrapper);
    slot.sequential->replace_module(key, wrapper.ptr());
  } else {
    *(slot.list->begin() + at) = wrapper.ptr();
    slot.list->replace_module(key, wrapper.ptr());
  }
}

// The unit's fp32 shard of `named` (rank 0's values with
// sync_module_states); the parameters are left empty until gathered.
void shard_unit(FsdpState& state, FsdpState::Unit& unit, const Named& named) {
  torch::NoGradGuard no_grad;
  std::vector<zero::FlatParam> flat_params;
  for (const auto& [name, t] : named) {
    unit.params.push_back(t);
    flat_params.push_back({name, t.sizes().vec(), false});
  }
  unit.layout = std::make_shared<zero::FlatLayout>(std::move(flat_params), state.group->size(), state.group->rank());
  auto full = torch::zeros({unit.layout->padded_numel()},
                           torch::TensorOptions().dtype(torch::kFloat).device(unit.params.empty()
                                                                                  ? torch::Device(torch::kCPU)
                                                                                  : unit.params[0].device()));
  const auto views = unit.layout->views(full);
  for (size_t k = 0; k < unit.params.size(); ++k) views[k].copy_(unit.params[k]);
  if (state.options.sync_module_states && state.group->size() > 1) state.group->broadcast(full, 0);
  unit.shard = full.narrow(0, unit.layout->shard_begin(), unit.layout->shard_numel()).clone().requires_grad_(true);
  const auto dtype = state.options.mixed_precision.param_dtype;
  for (auto& p : unit.params) p.set_data(torch::empty({0}, full.options().dtype(dtype)));
  unit.flat = zero::GatheredFlat(unit.layout.get(), unit.params);
  zero::return_free_memory_to_os();
}

}  // namespace

FullyShardedModule fully_shard(const std::shared_ptr<torch::nn::Module>& module,
                               std::shared_ptr<Communicator> dp_group, FullyShardOptions options) {
  options.validate();
  if (!module) throw UsageError("paratorch: fully_shard's module is null");
  if (!dp_group) throw UsageError("paratorch: fully_shard's dp_group is null");
  const auto names = unit_names(module, options);
  if (names.empty()) throw UsageError("paratorch: fully_shard: the module has no children and FullyShardOptions::units is empty");
  check_unit_names(module, names);
  check_coverage(module, names);
  std::vector<UnitSlot> slots;
  for (const auto& name : names) slots.push_back(unit_slot(module, name, options));

  auto state = std::make_shared<FsdpState>();
  state->group = std::move(dp_group);
  state->options = options;
  state->hook = reduce_in_dtype(options.mixed_precision.reduce_dtype, *state->group);
  const auto named = named_parameters_of(module, names);
  const Named tied = tied_tensors(named, &state->aliases);
  state->units.resize(names.size() + (tied.empty() ? 0 : 1));
  for (size_t u = 0; u < names.size(); ++u) {
    auto& unit = state->units[u];
    unit.name = names[u];
    unit.forward = unit_computation(slots[u], options);
    shard_unit(*state, unit, own_parameters(named[u], tied, &unit.shared_members));
  }
  if (!tied.empty()) {
    state->shared = names.size();
    auto& unit = state->units.back();
    unit.name = "(tied)";
    shard_unit(*state, unit, tied);
    module->register_parameter("fsdp_tied_flat_param", unit.shard);
  }
  for (size_t u = 0; u < names.size(); ++u) {
    FsdpUnit wrapper(state, u);
    state->wrappers.push_back(wrapper.ptr());
    install_unit(slots[u], names[u], wrapper);
  }
  return FullyShardedModule(state);
}

FullyShardedModule::FullyShardedModule(std::shared_ptr<FsdpState> state) : state_(std::move(state)) {}

void FullyShardedModule::register_comm_hook(CommHook hook) {
  if (!hook) throw UsageError("paratorch: FullyShardedModule::register_comm_hook: the hook is empty");
  state_->hook = std::move(hook);
}

std::vector<torch::Tensor> FullyShardedModule::parameters() const {
  std::vector<torch::Tensor> out;
  for (const auto& unit : state_->units) out.push_back(unit.shard);
  return out;
}

double FullyShardedModule::clip_grad_norm(double max_norm) const {
  return paratorch::clip_grad_norm(parameters(), max_norm, {state_->group, nullptr, nullptr});
}

std::vector<FsdpUnit> FullyShardedModule::units() const {
  std::vector<FsdpUnit> out;
  for (const auto& weak : state_->wrappers)
    if (auto wrapper = weak.lock()) out.emplace_back(wrapper);
  return out;
}

FsdpUnit FullyShardedModule::unit(const std::string& name) const {
  for (const auto& wrapper : units())
    if (wrapper->name() == name) return wrapper;
  throw UsageError("paratorch: FullyShardedModule::unit: no unit named '" + name + "'");
}

std::vector<CheckpointSlice> FullyShardedModule::checkpoint_slices(const torch::optim::Optimizer& optimizer,
                                                                   int64_t step) const {
  std::vector<CheckpointSlice> out;
  std::multimap<std::string, std::string> aliases_of;  // a tied weight's first name -> its other names
  for (const auto& [alias, name] : state_->aliases) aliases_of.emplace(name, alias);
  for (const auto& unit : state_->units) {
    const auto kinds = zero::read_state(optimizer, unit.shard);
    for (const auto& piece : unit.layout->pieces()) {
      const zero::FlatParam& p = unit.layout->params()[piece.param];
      auto slice_of = [&](const torch::Tensor& t) { return t.detach().narrow(0, piece.shard_offset, piece.length); };
      std::vector<std::string> names = {p.name};
      for (auto [it, end] = aliases_of.equal_range(p.name); it != end; ++it) names.push_back(it->second);
      // A tied weight's state under each of its names too: a plain module's
      // optimizer_state_by_name keys it by whichever name it meets last.
      for (const auto& name : names) {
        out.push_back({name, p.shape, piece.param_offset, slice_of(unit.shard), false});
        for (const auto& [kind, t] : kinds)
          if (t.defined()) out.push_back({name + "." + kind, p.shape, piece.param_offset, slice_of(t), true});
        if (!kinds.empty() && piece.param_offset == 0)
          out.push_back(
              {name + ".step", {1}, 0, torch::tensor({zero::read_step(optimizer, unit.shard)}, torch::kLong), true});
      }
    }
  }
  if (state_->group->rank() == 0) out.push_back({"step", {1}, 0, torch::tensor({step}, torch::kLong), true});
  return out;
}

std::map<std::string, torch::Tensor> FullyShardedModule::full_parameters() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& unit : state_->units)
    for (auto& [name, full] : zero::gather_full(*unit.layout, unit.shard.detach(), state_->group.get()))
      out[name] = full;
  for (const auto& [alias, name] : state_->aliases) out[alias] = out.at(name);
  return out;
}

}  // namespace paratorch
