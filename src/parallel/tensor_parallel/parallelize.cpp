// src/parallel/tensor_parallel/parallelize.cpp — parallelize(): swaps the
// Linear / Embedding children a plan names for tensor-parallel layers that
// hold this rank's slice of the child's own weights.
//
// libtorch has no forward hooks and Module::forward is not virtual, so the
// swap is made where a forward can see it: the parent's registry
// (Module::replace_module, what named_children() and forward_child() read)
// and, for Sequential / ModuleList / ModuleDict parents, the container's own
// list. Everything is checked and every new layer built before the first
// swap, so a UsageError leaves the module untouched.
#include <paratorch/errors.h>
#include <paratorch/tensor_parallel.h>

#include "parallel/tensor_parallel/plan_match.h"
#include "tensor_parallel/layers.h"

#include <functional>

namespace paratorch::tensor_parallel {
namespace {

namespace nn = torch::nn;

// A checked, built replacement, installed only once every match passed.
struct Swap {
  std::shared_ptr<nn::Module> parent;
  std::string key;
  std::function<void()> install;
};

std::shared_ptr<nn::Module> child_of(const nn::Module& parent, const std::string& key) {
  auto children = parent.named_children();
  auto* found = children.find(key);
  return found ? *found : nullptr;
}

bool is_container(const nn::Module& m) {
  return dynamic_cast<const nn::SequentialImpl*>(&m) || dynamic_cast<const nn::ModuleListImpl*>(&m) ||
         dynamic_cast<const nn::ModuleDictImpl*>(&m);
}

std::string style_name(ParallelStyle::Kind kind) {
  switch (kind) {
    case ParallelStyle::Kind::kColwise: return "colwise";
    case ParallelStyle::Kind::kRowwise: return "rowwise";
    case ParallelStyle::Kind::kVocab: return "vocab";
  }
  return "?";
}

// The new layer takes a slice of each of the old child's parameters, on the
// old parameter's dtype and device, keeping its requires_grad.
void copy_slices(nn::Module& layer, const ShardedModule& sharded, const nn::Module& old) {
  const auto old_params = old.named_parameters(/*recurse=*/false);
  torch::NoGradGuard no_grad;
  for (auto& p : layer.named_parameters(/*recurse=*/false)) {
    const auto& full = old_params[p.key()];
    p.value().set_data(sharded.shard_spec(p.key()).slice(full.detach()).clone());
    p.value().set_requires_grad(full.requires_grad());
  }
}

// Replaces `old` under `key` in `parent`: the registry, and the container's
// list when the parent is one (its forward reads that list, not the registry).
template <typename Holder>
void install(nn::Module& parent, const std::string& key, const std::shared_ptr<nn::Module>& old, Holder layer) {
  if (auto* seq = dynamic_cast<nn::SequentialImpl*>(&parent)) {
    for (auto it = seq->begin(); it != seq->end(); ++it)
      if (it->ptr() == old) *it = nn::AnyModule(layer);
  } else if (auto* list = dynamic_cast<nn::ModuleListImpl*>(&parent)) {
    for (auto it = list->begin(); it != list->end(); ++it)
      if (*it == old) *it = layer.ptr();
  } else if (auto* dict = dynamic_cast<nn::ModuleDictImpl*>(&parent)) {
    dict->update({{key, layer.ptr()}});  // replaces in the dict and the registry
    return;
  }
  parent.replace_module(key, layer.ptr());
}

template <typename Holder>
std::function<void()> installer(std::shared_ptr<nn::Module> parent, std::string key, std::shared_ptr<nn::Module> old,
                                Holder layer) {
  return [parent, key, old, layer] { install(*parent, key, old, layer); };
}

// Builds the tensor-parallel layer for `child`, or throws naming the child.
std::function<void()> build(const std::string& name, const std::shared_ptr<nn::Module>& parent, const std::string& key,
                            const std::shared_ptr<nn::Module>& child, const ParallelStyle& style,
                            const std::shared_ptr<Communicator>& tp) {
  const std::string what = "parallelize: \"" + name + "\" (" + style_name(style.kind) + ")";
  const int n = tp->size();
  if (style.kind == ParallelStyle::Kind::kVocab) {
    auto emb = std::dynamic_pointer_cast<nn::EmbeddingImpl>(child);
    if (!emb)
      throw UsageError("paratorch: " + what + " is a " + child->name() +
                       "; the vocab style applies to torch::nn::Embedding children");
    const auto& o = emb->options;
    if (o.padding_idx() || o.max_norm() || o.sparse() || o.scale_grad_by_freq())
      throw UsageError("paratorch: " + what + " sets padding_idx, max_norm, sparse or scale_grad_by_freq; "
                       "VocabParallelEmbedding does plain lookups only");
    require_divisible(what + " num_embeddings", o.num_embeddings(), n);
    VocabParallelEmbedding layer(VocabParallelEmbeddingOptions(o.num_embeddings(), o.embedding_dim()), tp);
    copy_slices(*layer, *layer, *child);
    return installer(parent, key, child, layer);
  }
  auto linear = std::dynamic_pointer_cast<nn::LinearImpl>(child);
  if (!linear)
    throw UsageError("paratorch: " + what + " is a " + child->name() + "; the " + style_name(style.kind) +
                     " style applies to torch::nn::Linear children");
  const auto& o = linear->options;
  if (style.kind == ParallelStyle::Kind::kRowwise) {
    require_divisible(what + " in_features", o.in_features(), n);
    RowParallelLinear layer(RowParallelLinearOptions(o.in_features(), o.out_features())
                                .bias(o.bias())
                                .input_is_parallel(style.input_is_parallel),
                            tp);
    copy_slices(*layer, *layer, *child);
    return installer(parent, key, child, layer);
  }
  if (style.fused_parts < 1 || o.out_features() % style.fused_parts != 0)
    throw UsageError("paratorch: " + what + ": ParallelStyle::fused_parts = " + std::to_string(style.fused_parts) +
                     " must be >= 1 and divide out_features = " + std::to_string(o.out_features()));
  require_divisible(what + (style.fused_parts > 1 ? " out_features / fused_parts" : " out_features"),
                    o.out_features() / style.fused_parts, n);
  ColumnParallelLinear layer(ColumnParallelLinearOptions(o.in_features(), o.out_features())
                                 .bias(o.bias())
                                 .fused_parts(style.fused_parts)
                                 .gather_output(style.gather_output),
                             tp);
  copy_slices(*layer, *layer, *child);
  return installer(parent, key, child, layer);
}

// Checks one matched child and builds its replacement.
Swap prepare(const std::shared_ptr<nn::Module>& root, const std::string& name, const ParallelStyle& style,
             const std::shared_ptr<Communicator>& tp) {
  const auto dot = name.rfind('.');
  const std::string key = dot == std::string::npos ? name : name.substr(dot + 1);
  auto parent = root;
  for (size_t start = 0; dot != std::string::npos && start <= dot;) {
    const auto next = name.find('.', start);
    parent = child_of(*parent, name.substr(start, next - start));
    start = next + 1;
  }
  auto child = child_of(*parent, key);
  // References: the parent's registry, `child`, and a container's own list.
  // Any more is a holder elsewhere (a member such as `torch::nn::Linear
  // c_fc`) that would keep calling the unsplit layer after the swap.
  const bool held_elsewhere = child.use_count() > 2 + (is_container(*parent) ? 1 : 0);
  // A child of the wrong type or size is reported as such first.
  auto install = build(name, parent, key, child, style, tp);
  if (held_elsewhere)
    throw UsageError("paratorch: parallelize: child \"" + name + "\" is also held outside its parent's registry "
                     "(e.g. by a member holder, which would keep calling the unsplit layer); register it without "
                     "keeping a member and call it with forward_child(*this, \"" + key + "\", x), or hold it in a "
                     "torch::nn::Sequential, ModuleList or ModuleDict");
  return {parent, key, std::move(install)};
}

}  // namespace

void ParallelStyle::validate() const {
  if (fused_parts < 1)
    throw UsageError("paratorch: ParallelStyle::fused_parts = " + std::to_string(fused_parts) +
                     " must be >= 1 (the number of fused output blocks, e.g. 3 for a qkv projection)");
  if (kind != Kind::kColwise && (fused_parts != 1 || gather_output))
    throw UsageError(std::string("paratorch: ParallelStyle::") + (fused_parts != 1 ? "fused_parts" : "gather_output") +
                     " applies to colwise only; this style is " + style_name(kind) +
                     ": build it with ParallelStyle::colwise(), or leave the field at its default");
}

std::vector<std::string> parallelize(const std::shared_ptr<nn::Module>& module, std::shared_ptr<Communicator> tp_group,
                                     const TensorParallelPlan& plan) {
  if (!module) throw UsageError("paratorch: parallelize: module is null");
  if (!tp_group)
    throw UsageError("paratorch: parallelize: tp_group is null; pass the tp group (World::comm() or "
                     "ProcessGroups::tp())");
  for (const auto& entry : plan) entry.second.validate();
  std::vector<std::string> names;
  for (const auto& m : module->named_modules("", /*include_self=*/false)) names.push_back(m.key());
  const auto matches = match_plan(names, plan);
  std::vector<Swap> swaps;
  std::vector<std::string> replaced;
  for (const auto& m : matches) {
    swaps.push_back(prepare(module, m.name, plan[m.entry].second, tp_group));
    replaced.push_back(m.name);
  }
  for (auto& s : swaps) s.install();
  return replaced;
}

}  // namespace paratorch::tensor_parallel
