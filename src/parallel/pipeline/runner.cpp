// src/parallel/pipeline/runner.cpp — see runner.h: setting a pipeline up
// (cuts, boundary shapes, parameters kept) and running steps through the
// schedule executor.
#include "parallel/pipeline/runner.h"

#include "parallel/pipeline/options.h"
#include <paratorch/errors.h>
#include <paratorch/tensor_parallel.h>

#include <algorithm>

namespace paratorch {

using parallel::pipeline::BlockModel;
namespace mech = ::paratorch::pipeline;

PipelineRunner::PipelineRunner(std::vector<PipelineBlock> blocks, std::shared_ptr<Communicator> pp,
                               torch::Tensor example_input, PipelineOptions options)
    : options_(std::move(options)), pp_(std::move(pp)) {
  options_.validate();
  if (!pp_) throw UsageError("paratorch: Pipeline needs a pp communicator (argument pp is null)");
  if (!example_input.defined() || example_input.dim() == 0 || example_input.size(0) < 1)
    throw UsageError("paratorch: Pipeline's example_input must be a batch (dim 0) of at least one sample");
  model_ = std::make_shared<BlockModel>(std::move(blocks));
  blocks_ = model_->blocks();
  shape_ = parallel::pipeline::check_shape(options_, pp_->size(), model_->block_count());
  const std::string by = parallel::pipeline::partition_text(options_.partition, *model_, options_.split_points,
                                                            "PipelineOptions::split_points");
  const std::vector<double> block_ms =
      options_.partition == PartitionBy::kTime ? measured_block_ms(example_input) : std::vector<double>{};
  partition_ = mech::make_partition(by, *model_, blocks_, shape_.model_stages(), block_ms);
  params_ = std::make_unique<parallel::pipeline::StageParameters>(*model_, partition_, shape_, pp_->rank(),
                                                                  options_.tied);
  auto boundaries = boundary_specs(example_input);
  params_->keep_own(*model_, options_.device);
  executor_ = std::make_unique<mech::Executor>(pp_, mech::make_schedule(parallel::pipeline::schedule_name(options_.schedule), shape_),
                                               local_chunks(), std::move(boundaries), options_.device,
                                               options_.activation_checkpointing);
}

// Timed on pp rank 0 only and broadcast, so every rank cuts at the same
// blocks (timings differ from rank to rank; cuts must not).
std::vector<double> PipelineRunner::measured_block_ms(const torch::Tensor& example_input) {
  auto ms = torch::zeros({model_->block_count()}, torch::kDouble);
  if (pp_->rank() == 0) {
    auto timed = blocks_;
    const auto measured = mech::measure_block_ms(timed, example_input);
    for (size_t i = 0; i < measured.size(); ++i) ms[static_cast<int64_t>(i)] = measured[i];
    for (auto& p : model_->parameters()) p.mutable_grad() = torch::Tensor();  // timing left gradients
  }
  pp_->broadcast(ms, 0);
  return std::vector<double>(ms.data_ptr<double>(), ms.data_ptr<double>() + ms.numel());
}

std::vector<mech::BoundarySpec> PipelineRunner::boundary_specs(const torch::Tensor& example_input) {
  torch::NoGradGuard no_grad;
  std::vector<mech::BoundarySpec> out;
  torch::Tensor x = example_input.narrow(0, 0, 1);
  for (int s = 0; s < partition_.stages(); ++s) {
    for (int i = partition_.first[static_cast<size_t>(s)]; i < partition_.first[static_cast<size_t>(s) + 1]; ++i)
      x = blocks_[static_cast<size_t>(i)].forward(x);
    if (x.dim() == 0)
      throw UsageError("paratorch: block \"" + blocks_[static_cast<size_t>(partition_.first[static_cast<size_t>(s) + 1]) - 1].name +
                       "\" returns a tensor without a batch dimension; a pipeline cuts the batch along dim 0");
    auto shape = x.sizes().vec();
    shape[0] = -1;
    if (s + 1 < partition_.stages()) out.push_back({shape, x.scalar_type()});
  }
  output_dtype_ = x.scalar_type();
  return out;
}

std::vector<mech::StageChunk> PipelineRunner::local_chunks() const {
  std::vector<mech::StageChunk> chunks;
  for (int c = 0; c < shape_.virtual_stages; ++c) {
    const int s = shape_.model_stage(pp_->rank(), c);
    mech::StageChunk chunk{s, {}};
    for (int i = partition_.first[static_cast<size_t>(s)]; i < partition_.first[static_cast<size_t>(s) + 1]; ++i)
      chunk.blocks.push_back(blocks_[static_cast<size_t>(i)]);
    chunks.push_back(std::move(chunk));
  }
  return chunks;
}

// Each micro-batch's mean loss is scaled by 1/m: the micro-batches are of
// equal size, so the scaled sum is the batch's mean loss and the gradients
// accumulated over them are the gradients of that mean (GPipe §2).
double PipelineRunner::step(const torch::Tensor& input, const torch::Tensor& target, const PipelineLoss& loss_fn) {
  parallel::pipeline::check_batch(options_, input, target);
  const int m = options_.microbatches;
  const int64_t per = input.size(0) / m;
  std::vector<models::Batch> micro;
  for (int k = 0; k < m; ++k)
    micro.push_back({input.narrow(0, k * per, per).to(options_.device), target.narrow(0, k * per, per).to(options_.device)});
  auto criterion = [&loss_fn](const torch::Tensor& out, const models::Batch& b) {
    torch::Tensor loss = loss_fn(out, b.target);
    if (!loss.defined() || loss.numel() != 1)
      throw UsageError("paratorch: Pipeline::step's loss_fn must return one value (the micro-batch's mean loss)");
    return loss.reshape({});
  };
  params_->begin_step();
  const double local = executor_->run_step(micro, criterion, 1.0 / m);
  params_->finish_step(*pp_);
  auto loss = torch::tensor({local}, torch::kDouble);  // non-zero on the last stage only
  pp_->all_reduce(loss, ReduceOp::kSum);
  return loss.item<double>();
}

// The output's shape is only known on the last stage (the batch may differ
// from the example's): it goes out first, then the output itself.
torch::Tensor PipelineRunner::forward(const torch::Tensor& input) {
  if (!input.defined() || input.dim() == 0)
    throw UsageError("paratorch: Pipeline::forward needs an input with a batch dimension (dim 0) on every rank");
  torch::NoGradGuard no_grad;
  torch::Tensor out = executor_->forward_only({input.to(options_.device), torch::Tensor()});
  constexpr int kMaxDims = 16;
  auto dims = torch::zeros({kMaxDims + 1}, torch::kLong);
  if (last_rank()) {
    dims[0] = out.dim();
    for (int64_t d = 0; d < out.dim() && d < kMaxDims; ++d) dims[d + 1] = out.size(d);
  }
  pp_->broadcast(dims, pp_->size() - 1);
  std::vector<int64_t> shape(dims.data_ptr<int64_t>() + 1, dims.data_ptr<int64_t>() + 1 + dims[0].item<int64_t>());
  out = last_rank() ? out.contiguous()
                    : torch::empty(shape, torch::TensorOptions().dtype(output_dtype_).device(options_.device));
  pp_->broadcast(out, pp_->size() - 1);
  return out;
}

std::vector<std::string> PipelineRunner::local_block_names() const {
  std::vector<std::string> out;
  for (const auto& chunk : local_chunks())
    for (const auto& b : chunk.blocks) out.push_back(b.name);
  return out;
}

std::string PipelineRunner::describe() const {
  std::string out;
  for (int s = 0; s < partition_.stages(); ++s) {
    const int a = partition_.first[static_cast<size_t>(s)], b = partition_.first[static_cast<size_t>(s) + 1];
    out += (s ? " | stage " : "stage ") + std::to_string(s) + ": " + blocks_[static_cast<size_t>(a)].name;
    if (b - a > 1) out += ".." + blocks_[static_cast<size_t>(b) - 1].name;
    out += " (" + std::to_string(partition_.params[static_cast<size_t>(s)]) + " params)";
  }
  return out;
}

std::vector<parallel::NormEntry> PipelineRunner::norm_entries(bool tp_specs) const {
  auto entries = params_->norm_entries();
  if (!tp_specs) return entries;
  std::map<const void*, tensor_parallel::ShardSpec> split;  // by tensor: names differ between block and model
  for (int i = 0; i < model_->block_count(); ++i) {
    const auto& block = model_->block(i);
    const auto specs = tensor_parallel::shard_specs(*block.module);
    for (const auto& p : block.module->named_parameters()) {
      auto it = specs.find(p.key());
      if (it != specs.end()) split[p.value().unsafeGetTensorImpl()] = it->second;
    }
  }
  const auto local = params_->local();
  for (size_t k = 0; k < entries.size(); ++k) {
    auto it = split.find(local[k].unsafeGetTensorImpl());
    if (it != split.end()) entries[k].spec = it->second;
  }
  return entries;
}

void PipelineRunner::set_gradient_sync(std::function<void(bool last)> sync) {
  if (!sync) return executor_->observe_backwards({});
  // The chunk whose last backward comes last in this rank's action list.
  const auto& last = executor_->last_backwards();
  const int final_chunk = static_cast<int>(std::max_element(last.begin(), last.end()) - last.begin());
  executor_->observe_backwards([sync = std::move(sync), final_chunk](int chunk, bool last_of_chunk) {
    sync(last_of_chunk && chunk == final_chunk);
  });
}

}  // namespace paratorch
