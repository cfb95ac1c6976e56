// src/parallel/tensor_parallel/forward_child.cpp — calls a child through its
// parent's registry. A member holder (`torch::nn::Linear c_fc`) is bound to
// the module it was given and forward is not virtual, so a custom module
// whose children parallelize() may swap calls them by name instead.
#include <paratorch/errors.h>
#include <paratorch/tensor_parallel.h>

namespace paratorch::tensor_parallel {

torch::Tensor forward_child(torch::nn::Module& parent, const std::string& name, const torch::Tensor& x) {
  namespace nn = torch::nn;
  std::shared_ptr<nn::Module> child;
  {
    auto children = parent.named_children();
    if (auto* found = children.find(name)) child = *found;
  }
  if (!child)
    throw UsageError("paratorch: forward_child: " + parent.name() + " has no child named \"" + name + "\"");
  if (auto* m = dynamic_cast<nn::LinearImpl*>(child.get())) return m->forward(x);
  if (auto* m = dynamic_cast<ColumnParallelLinearImpl*>(child.get())) return m->forward(x);
  if (auto* m = dynamic_cast<RowParallelLinearImpl*>(child.get())) return m->forward(x);
  if (auto* m = dynamic_cast<nn::EmbeddingImpl*>(child.get())) return m->forward(x);
  if (auto* m = dynamic_cast<VocabParallelEmbeddingImpl*>(child.get())) return m->forward(x);
  if (auto* m = dynamic_cast<nn::SequentialImpl*>(child.get())) return m->forward(x);
  throw UsageError("paratorch: forward_child: child \"" + name + "\" is a " + child->name() +
                   "; forward_child calls torch::nn::Linear, Embedding, Sequential and the tensor-parallel layers");
}

}  // namespace paratorch::tensor_parallel
