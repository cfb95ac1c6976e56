// src/train/tensor_parallel_engine.cpp — see tensor_parallel_engine.h.
#include "train/tensor_parallel_engine.h"

#include "report/trace.h"
#include "tensor_parallel/mappings.h"
#include <paratorch/errors.h>

namespace paratorch::train {
namespace {

// The optimizer of [optim] over this rank's shards, whose state travels as
// whole tensors: state_tensors() gathers each sharded parameter's state
// ("<parameter>.<state>", shaped like the shard) over tp and reassembles it
// (collective: every rank walks the same sorted names); load_state_tensors
// slices whole tensors back to this rank's shard.
class TensorParallelOptimizer : public Optimizer {
 public:
  TensorParallelOptimizer(std::unique_ptr<Optimizer> inner, std::map<std::string, tensor_parallel::ShardSpec> specs,
                          std::map<std::string, std::vector<int64_t>> shard_shapes, std::shared_ptr<Communicator> tp)
      : inner_(std::move(inner)), specs_(std::move(specs)), shapes_(std::move(shard_shapes)), tp_(std::move(tp)) {}

  void step(double lr) override {
    inner_->step(lr);
    steps_ = inner_->steps_taken();
  }

  std::map<std::string, torch::Tensor> state_tensors() const override {
    auto state = inner_->state_tensors();
    for (auto& [name, t] : state) {
      const auto* spec = sharded_state(name, t.sizes(), false);
      if (!spec) continue;
      auto mine = t.detach().cpu().contiguous();
      std::vector<int64_t> shape{tp_->size()};
      shape.insert(shape.end(), mine.sizes().begin(), mine.sizes().end());
      auto all = torch::empty(shape, mine.options());
      tp_->all_gather(all, mine);
      t = spec->assemble(all.unbind(0));
    }
    return state;
  }

  void load_state_tensors(const std::map<std::string, torch::Tensor>& state) override {
    auto local = state;
    for (auto& [name, t] : local)
      if (const auto* spec = sharded_state(name, t.sizes(), true)) t = spec->slice(t);
    inner_->load_state_tensors(local);
    steps_ = inner_->steps_taken();
  }

 private:
  // The spec of the sharded parameter whose state `name` is, when `sizes`
  // are its shard's (whole = false) or whole tensor's (whole = true) shape.
  const tensor_parallel::ShardSpec* sharded_state(const std::string& name, torch::IntArrayRef sizes,
                                                  bool whole) const {
    const auto dot = name.rfind('.');
    if (dot == std::string::npos) return nullptr;
    auto it = specs_.find(name.substr(0, dot));
    if (it == specs_.end() || !it->second.sharded()) return nullptr;
    const auto& shard = shapes_.at(it->first);
    const auto expected = whole ? it->second.full_shape(shard) : shard;
    return sizes == torch::IntArrayRef(expected) ? &it->second : nullptr;
  }

  std::unique_ptr<Optimizer> inner_;
  std::map<std::string, tensor_parallel::ShardSpec> specs_;
  std::map<std::string, std::vector<int64_t>> shapes_;
  std::shared_ptr<Communicator> tp_;
};

}  // namespace

TensorParallelEngine::TensorParallelEngine(const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model,
                                           const data::Dataset& dataset, torch::Device device,
                                           DataParallelOptions options, bool sequence_parallel)
    : DataParallelEngine(groups, model, dataset, device, options),
      groups_(groups),
      specs_(model->shard_specs()),
      sequence_parallel_(sequence_parallel) {}

double TensorParallelEngine::forward_backward(const std::vector<int64_t>& ids) {
  const double loss = DataParallelEngine::forward_backward(ids);
  // Partial gradients (sequence parallelism) travel in one flat all-reduce.
  std::vector<torch::Tensor> partial;
  for (const auto& item : model().named_parameters(true))
    if (specs_.at(item.key()).partial_grad && item.value().grad().defined()) partial.push_back(item.value().grad());
  if (!partial.empty() && groups_.layout().tp > 1) {
    report::Tracer::Span span("tp.partial_grads", "tp");
    std::vector<torch::Tensor> flats;
    for (const auto& g : partial) flats.push_back(g.reshape({-1}));
    auto flat = torch::cat(flats);
    tensor_parallel::timed_all_reduce(flat, *groups_.tp(), ReduceOp::kSum);
    int64_t offset = 0;
    torch::NoGradGuard no_grad;
    for (auto& g : partial) {
      g.copy_(flat.narrow(0, offset, g.numel()).view_as(g));
      offset += g.numel();
    }
  }
  return loss;
}

SumAcross TensorParallelEngine::grad_norm_across() {
  if (groups_.layout().tp == 1) return nullptr;
  return [this](double local) {
    // local = sharded squares + replicated squares; the replicated part is
    // the same on every tp rank, so only the sharded part is summed.
    double replicated = 0;
    for (const auto& item : model().named_parameters(true))
      if (!specs_.at(item.key()).sharded() && item.value().grad().defined())
        replicated += item.value().grad().pow(2).sum().item<double>();
    auto sharded = torch::tensor({local - replicated}, torch::kDouble);
    groups_.tp()->all_reduce(sharded, ReduceOp::kSum);
    return sharded.item<double>() + replicated;
  };
}

std::map<std::string, torch::Tensor> TensorParallelEngine::full_parameters() {
  std::map<std::string, torch::Tensor> out;
  const int tp = groups_.layout().tp;
  for (const auto& item : model().named_parameters(true)) {
    const auto& spec = specs_.at(item.key());
    auto mine = item.value().detach().cpu().contiguous();
    if (!spec.sharded()) {
      out[item.key()] = mine;
      continue;
    }
    std::vector<int64_t> shape{tp};
    shape.insert(shape.end(), mine.sizes().begin(), mine.sizes().end());
    auto all = torch::empty(shape, mine.options());
    groups_.tp()->all_gather(all, mine);
    out[item.key()] = spec.assemble(all.unbind(0));
  }
  return out;
}

void TensorParallelEngine::load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (auto& item : model().named_parameters(true)) {
    const auto& spec = specs_.at(item.key());
    auto it = tensors.find(item.key());
    if (it == tensors.end())
      throw RuntimeFailure("paratorch: checkpoint has no tensor '" + item.key() + "' for this model");
    const auto full_shape = spec.full_shape(item.value().sizes());
    if (it->second.sizes() != torch::IntArrayRef(full_shape))
      throw RuntimeFailure("paratorch: checkpoint tensor '" + item.key() + "' has shape " +
                           c10::str(it->second.sizes()) + " but the model needs " + c10::str(full_shape));
    item.value().copy_(spec.slice(it->second));
  }
}

int64_t TensorParallelEngine::parameter_count() {
  int64_t n = 0;
  for (const auto& item : model().named_parameters(true))
    n += item.value().numel() * (specs_.at(item.key()).sharded() ? groups_.layout().tp : 1);
  return n;
}

std::unique_ptr<Optimizer> TensorParallelEngine::build_optimizer(const OptimSection& options) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& item : model().named_parameters(true))
    shapes[item.key()] = item.value().sizes().vec();
  return std::make_unique<TensorParallelOptimizer>(make_optimizer(options, named_parameters()), specs_,
                                                   std::move(shapes), groups_.tp());
}

std::string TensorParallelEngine::describe() {
  return "tensor parallel: tp=" + std::to_string(groups_.layout().tp) +
         (sequence_parallel_ ? " with sequence parallelism" : "") + "; " + DataParallelEngine::describe();
}

}  // namespace paratorch::train
