// src/parallel/pipeline/pipeline_dp_overlap.cpp — PipelineEngine's dp gradient average
// overlapped with backward (dp > 1).
//
// Each model chunk of this rank gets a DDP Reducer (parallel/ddp/reducer.h)
// over the stage's dp group: its gradients live in buckets, and a hook on
// each parameter's gradient accumulator launches a bucket's all-reduce on
// the communication thread the moment its last gradient is final. A chunk
// runs m backwards per step; the executor says which is the chunk's last
// (parallel/pipeline/executor.h), and only that one runs with sync on (DDP's
// no_sync for the others, as gradient accumulation does), so each bucket is
// averaged once per step, while the rest of that backward and the other
// chunks' backwards still run. The reducer finalizes at the end of that
// backward (launches what is left, waits, leaves averages in .grad).
// Megatron-LM overlaps its pipeline's data-parallel reduction the same way
// (Narayanan et al. 2021, §4.1; PyTorch DDP: Li et al., VLDB 2020).
// In mixed precision the reducers hold fp32 main gradients of the model's
// 16-bit parameters (DDPOptions::main_grad_dtype): each micro-batch's
// gradient is added in at fp32 and the average is fp32, and the masters
// take them as their .grad (MixedPrecision::use_gradients).
//
// A parameter used by several of this rank's chunks is final only after the
// last of their backwards: it goes to the reducer of the chunk whose last
// backward comes latest, which stays out of sync until then. Parameters that
// get no gradient in the synced backward are reduced with what they
// accumulated (find_unused_parameters), so none leaves a bucket pending; a
// chunk whose synced backward reached none of its parameters launched
// nothing, and reduce_gradients averages it after the schedule instead.
#include "parallel/ddp/reducer.h"
#include "parallel/pipeline/pipeline_engine.h"
#include "parallel/mixed_precision/precision.h"

#include <algorithm>
#include <map>
#include <set>

namespace paratorch::pipeline {

void PipelineEngine::overlap_dp_reduction(const std::vector<pipeline::StageChunk>& chunks) {
  const auto& last = executor_->last_backwards();
  std::map<std::string, int> reducer_of;  // held parameter -> chunk whose reducer takes it
  for (size_t c = 0; c < chunks.size(); ++c)
    for (const auto& block : chunks[c].blocks)
      for (const auto* names : {&block.parameters, &block.shared})
        for (const auto& name : *names) {
          auto it = reducer_of.find(name);
          if (it == reducer_of.end() || last[static_cast<size_t>(it->second)] < last[c])
            reducer_of[name] = static_cast<int>(c);
        }
  reducers_.assign(chunks.size(), {});
  for (const auto& name : held_)  // model order: buckets fill in reverse, as backward produces them
    if (reducer_of.count(name) && params_.at(name).requires_grad())
      reducers_[static_cast<size_t>(reducer_of.at(name))].names.push_back(name);
  // Split backwards (zb-h1, zb-v) run each W as several autograd engine
  // calls (split_backward.h): a reducer's pass ends after the chunk's last
  // W, not at the end of an engine call.
  const bool split = pipeline::splits_backward(executor_->schedule().name);
  DDPOptions ddp;
  ddp.bucket_mb = options_.bucket_mb;
  ddp.find_unused_parameters = true;
  if (precision_->enabled()) ddp.main_grad_dtype = torch::kFloat;
  std::map<std::string, torch::Tensor> main_grads;
  for (auto& r : reducers_) {
    if (r.names.empty()) continue;
    std::vector<torch::Tensor> params;
    for (const auto& name : r.names) params.push_back(params_.at(name));  // the model's own (16-bit in mixed precision)
    r.reducer = std::make_shared<Reducer>(std::move(params), r.names, groups_.dp(), ddp);  // collective over dp
    r.reducer->install_hooks();
    r.reducer->set_finalize_at_end_of_backward(!split);
    // The same hook as every other dp reduction (reduce_in_dtype: plain, or
    // DDP's 16-bit compression) and as the post-schedule path (average_over_dp).
    r.reducer->set_comm_hook(reduce_in_dtype(options_.reduce_dtype, *groups_.dp()));
    if (!precision_->enabled()) continue;
    const auto grads = r.reducer->main_grads();
    for (size_t i = 0; i < r.names.size(); ++i) main_grads[r.names[i]] = grads[i];
  }
  precision_->use_gradients(std::move(main_grads));
  executor_->observe_backwards(
      [this](int chunk, bool last_of_chunk) {
        if (auto& reducer = reducers_[static_cast<size_t>(chunk)].reducer) reducer->set_sync(last_of_chunk);
      },
      [this](int chunk) {  // a no-op where the engine's end of backward finalized already
        if (auto& reducer = reducers_[static_cast<size_t>(chunk)].reducer) reducer->finalize();
      });
}

void PipelineEngine::begin_dp_reduction() {
  for (auto& r : reducers_)
    if (r.reducer) {
      // Main gradients start from zero each step, even where the last step's
      // synced backward reached none of the chunk's parameters (no pass ended).
      r.reducer->restart_accumulation();
      r.reducer->set_sync(false);
      r.launched_before_step = r.reducer->reductions_launched();
    }
}

std::vector<std::string> PipelineEngine::not_reduced_by_reducers() const {
  std::set<std::string> done;
  for (const auto& r : reducers_)
    if (r.reducer && r.reducer->reductions_launched() > r.launched_before_step) done.insert(r.names.begin(), r.names.end());
  std::vector<std::string> out;
  for (const auto& name : held_)
    if (!done.count(name)) out.push_back(name);
  return out;
}

size_t PipelineEngine::dp_buckets() const {
  size_t n = 0;
  for (const auto& r : reducers_)
    if (r.reducer) n += r.reducer->layouts().size();
  return n;
}

int64_t PipelineEngine::dp_reductions_launched() const {
  int64_t n = 0;
  for (const auto& r : reducers_)
    if (r.reducer) n += r.reducer->reductions_launched();
  return n;
}

int64_t PipelineEngine::dp_reductions_launched(const std::string& name) const {
  for (const auto& r : reducers_)
    if (r.reducer && std::find(r.names.begin(), r.names.end(), name) != r.names.end())
      return r.reducer->reductions_launched();
  return -1;
}

}  // namespace paratorch::pipeline
