// src/parallel/pipeline/executor.cpp — see executor.h.
#include "parallel/pipeline/executor.h"

#include "parallel/pipeline/split_backward.h"
#include "report/trace.h"
#include <paratorch/errors.h>

#include <cstdio>
#include <malloc.h>

namespace paratorch::pipeline {

torch::Tensor StageChunk::forward(torch::Tensor x) const {
  for (const auto& b : blocks) x = b.forward(x);
  return x;
}

namespace {

// Bytes the process has allocated through malloc (small blocks and mmap'd
// large ones); -1 where glibc's mallinfo2 is missing.
int64_t heap_in_use_bytes() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
#else
  return -1;
#endif
}

}  // namespace

struct Executor::Slot {
  torch::Tensor input;     // the chunk's input (a leaf that requires grad past stage 0)
  WorkHandle input_recv;
  torch::Tensor output;    // the chunk's output, or the scaled loss on the last stage
  torch::Tensor grad_out;  // gradient received for `output`
  WorkHandle grad_recv;
  torch::Tensor grad_in;   // input.grad, sent to the previous stage
  bool grad_sent = false;
  SplitBackward split;     // I done, W pending: the graph W needs
};

Executor::Executor(std::shared_ptr<Communicator> pp, Schedule schedule, std::vector<StageChunk> chunks,
                   std::vector<BoundarySpec> boundaries, torch::Device device, bool activation_checkpointing)
    : pp_(std::move(pp)),
      schedule_(std::move(schedule)),
      chunks_(std::move(chunks)),
      boundaries_(std::move(boundaries)),
      device_(device),
      checkpointing_(activation_checkpointing),
      rank_(pp_->rank()) {
  const auto& s = schedule_.shape;
  validate_transfer_tags(s);  // its messages are tagged per micro-batch and boundary
  if (pp_->size() != s.stages || static_cast<int>(chunks_.size()) != s.virtual_stages ||
      static_cast<int>(boundaries_.size()) != s.model_stages() - 1)
    throw RuntimeFailure("pipeline executor: group of " + std::to_string(pp_->size()) + " ranks, " +
                         std::to_string(chunks_.size()) + " chunks and " + std::to_string(boundaries_.size()) +
                         " boundaries do not fit schedule with p=" + std::to_string(s.stages) +
                         ", v=" + std::to_string(s.virtual_stages));
  if (checkpointing_ && splits_backward(schedule_.name))
    throw UsageError("paratorch: activation checkpointing does not combine with schedule \"" + schedule_.name +
                     "\" yet (its W would need the recomputed graph kept); use 1f1b or turn checkpointing off");
  last_backward_.assign(chunks_.size(), -1);
  const auto& mine = schedule_.ranks[static_cast<size_t>(rank_)];
  for (size_t i = 0; i < mine.size(); ++i)
    if (makes_weight_grads(mine[i].type)) last_backward_[static_cast<size_t>(mine[i].chunk)] = static_cast<int>(i);
}

Executor::~Executor() = default;

bool Executor::holds_last_stage() const { return rank_ == schedule_.shape.stages - 1; }

int Executor::peer_rank(int model_stage) const { return schedule_.shape.rank_of_stage(model_stage); }

torch::Tensor Executor::boundary_buffer(int boundary, int64_t batch) const {
  auto shape = boundaries_[static_cast<size_t>(boundary)].shape;
  shape[0] = batch;
  return torch::empty(shape, torch::TensorOptions().dtype(boundaries_[static_cast<size_t>(boundary)].dtype).device(device_));
}

// Completed sends release their tensors; `wait` finishes all of them (end of
// a step). Polling also drives MPI's progress of large transfers.
void Executor::drain_sends(bool wait) {
  std::vector<std::pair<WorkHandle, torch::Tensor>> still;
  for (auto& s : sends_) {
    if (wait) s.first->wait();
    else if (!s.first->is_completed()) still.push_back(std::move(s));
  }
  sends_ = std::move(still);
}

void Executor::note_storage() {
  if (measure_memory_) {
    const int64_t now = heap_in_use_bytes();
    if (now >= 0) stats_.peak_heap_growth_bytes = std::max(stats_.peak_heap_growth_bytes, now - heap_at_start_);
  }
  int64_t bytes = 0;
  for (const auto& [key, slot] : slots_)
    for (const auto* t : {&slot->input, &slot->output, &slot->grad_out})
      if (t->defined()) bytes += static_cast<int64_t>(t->numel() * t->element_size());
  stats_.peak_stored_bytes = std::max(stats_.peak_stored_bytes, bytes);
}

double Executor::run_step(const std::vector<models::Batch>& micro, const Criterion& criterion, double loss_scale) {
  if (static_cast<int>(micro.size()) != schedule_.shape.microbatches)
    throw RuntimeFailure("pipeline executor: " + std::to_string(micro.size()) + " micro-batches for a schedule of " +
                         std::to_string(schedule_.shape.microbatches));
  report::Tracer::Span step_span("step", "pipeline_step");  // the window timeline.h measures in
  if (measure_memory_) heap_at_start_ = heap_in_use_bytes();
  double loss_sum = 0;
  int in_flight = 0, retained = 0;
  const auto& actions = schedule_.ranks[static_cast<size_t>(rank_)];
  for (size_t i = 0; i < actions.size(); ++i) {
    const Action& a = actions[i];
    const bool last = last_backward_[static_cast<size_t>(a.chunk)] == static_cast<int>(i);
    if (makes_weight_grads(a.type) && observer_) observer_(a.chunk, last);
    run_action(a, micro, criterion, loss_scale, loss_sum);
    if (last && after_last_) after_last_(a.chunk);
    if (a.type == ActionType::kForward) stats_.peak_in_flight = std::max(stats_.peak_in_flight, ++in_flight);
    if (a.type == ActionType::kBackwardInput)
      stats_.peak_retained_graphs = std::max(stats_.peak_retained_graphs, ++retained);
    if (a.type == ActionType::kBackwardWeight) --retained;
    if (makes_weight_grads(a.type)) --in_flight;
    if (!sends_.empty()) drain_sends(false);
  }
  drain_sends(true);
  slots_.clear();
  return loss_sum;
}

void Executor::run_action(const Action& a, const std::vector<models::Batch>& micro, const Criterion& criterion,
                          double loss_scale, double& loss_sum) {
  const auto& shape = schedule_.shape;
  const int stage = shape.model_stage(rank_, a.chunk);
  const bool last = stage == shape.model_stages() - 1;
  const models::Batch& batch = micro[static_cast<size_t>(a.microbatch)];
  auto& slot_ptr = slots_[{a.microbatch, a.chunk}];
  if (!slot_ptr) slot_ptr = std::make_unique<Slot>();
  Slot& slot = *slot_ptr;
  const StageChunk& chunk = chunks_[static_cast<size_t>(a.chunk)];
  switch (a.type) {
    case ActionType::kRecvActivation:
      slot.input = boundary_buffer(stage - 1, batch.size());
      slot.input_recv = pp_->recv_async(slot.input, peer_rank(stage - 1), transfer_tag(shape, a.microbatch, stage - 1, false));
      break;
    case ActionType::kRecvGrad:
      slot.grad_out = boundary_buffer(stage, batch.size());
      slot.grad_recv = pp_->recv_async(slot.grad_out, peer_rank(stage + 1), transfer_tag(shape, a.microbatch, stage, true));
      break;
    case ActionType::kForward: {
      if (stage == 0) slot.input = batch.input;
      else slot.input_recv->wait(), slot.input.requires_grad_(true);
      report::Tracer::Span span(to_string(a), "pipeline");
      torch::Tensor out;
      {
        torch::AutoGradMode grad_mode(!checkpointing_);
        out = chunk.forward(slot.input);
        if (last) out = criterion(out, batch) * loss_scale;
      }
      if (last) loss_sum += out.item<double>();
      if (!checkpointing_ || !last) slot.output = out;  // checkpointed: sent now, dropped after the send
      break;
    }
    case ActionType::kSendActivation:
      sends_.emplace_back(pp_->send_async(slot.output.detach().contiguous(), peer_rank(stage + 1),
                                          transfer_tag(shape, a.microbatch, stage, false)),
                          slot.output.detach());
      if (checkpointing_) slot.output = torch::Tensor();
      break;
    case ActionType::kBackward: {
      if (!last) slot.grad_recv->wait();
      report::Tracer::Span span(to_string(a), "pipeline");
      // The input's gradient leaves the moment autograd has computed it, not
      // when backward() returns: end-of-backward callbacks (a dp Reducer's
      // finalize, waiting for its buckets) must not hold the previous stage.
      if (stage > 0)
        slot.input.register_hook([this, &slot, stage, mb = a.microbatch](const torch::Tensor& g) {
          slot.grad_in = g;
          send_grad(slot, stage, mb);
        });
      if (checkpointing_) {  // recompute this chunk's forward, now with autograd
        torch::Tensor out = chunk.forward(slot.input);
        slot.output = last ? criterion(out, batch) * loss_scale : out;
      }
      if (last) slot.output.backward();
      else slot.output.backward(slot.grad_out);
      if (stage > 0 && !slot.grad_sent) slot.grad_in = slot.input.grad();
      slot.input = slot.output = slot.grad_out = torch::Tensor();  // this micro-batch's activations are freed
      break;
    }
    case ActionType::kBackwardInput: {
      if (!last) slot.grad_recv->wait();
      report::Tracer::Span span(to_string(a), "pipeline");
      slot.grad_in = slot.split.input_pass(slot.output, last ? torch::Tensor() : slot.grad_out,
                                           stage > 0 ? slot.input : torch::Tensor());
      if (!slot.split.split() && stage > 0 && stats_.unsplit_backwards++ == 0)
        std::fprintf(stderr,
                     "paratorch: pipeline stage %d: its backward cannot be split into I and W (a parameter feeds the "
                     "stage's graph in two places); W runs the whole backward again (correct, slower)\n",
                     stage);
      slot.grad_out = torch::Tensor();  // the graph's W holds what it needs
      break;
    }
    case ActionType::kBackwardWeight: {
      report::Tracer::Span span(to_string(a), "pipeline");
      slot.split.weight_pass();
      slot.input = slot.output = torch::Tensor();  // this micro-batch's activations are freed
      break;
    }
    case ActionType::kSendGrad:
      if (!slot.grad_sent) send_grad(slot, stage, a.microbatch);  // else posted inside the backward
      break;
  }
  note_storage();
}

void Executor::send_grad(Slot& slot, int stage, int microbatch) {
  sends_.emplace_back(pp_->send_async(slot.grad_in.contiguous(), peer_rank(stage - 1),
                                      transfer_tag(schedule_.shape, microbatch, stage - 1, true)),
                      slot.grad_in);
  slot.grad_in = torch::Tensor();
  slot.grad_sent = true;
}

torch::Tensor Executor::forward_only(const models::Batch& batch) {
  torch::NoGradGuard no_grad;
  const auto& shape = schedule_.shape;
  torch::Tensor result;
  for (int c = 0; c < shape.virtual_stages; ++c) {
    const int stage = shape.model_stage(rank_, c);
    torch::Tensor x = batch.input;
    if (stage > 0) {
      x = boundary_buffer(stage - 1, batch.size());
      pp_->recv(x, peer_rank(stage - 1), transfer_tag(shape, 0, stage - 1, false));
    }
    torch::Tensor y = chunks_[static_cast<size_t>(c)].forward(x);
    if (stage + 1 < shape.model_stages())
      sends_.emplace_back(pp_->send_async(y.contiguous(), peer_rank(stage + 1), transfer_tag(shape, 0, stage, false)), y);
    else
      result = y;
  }
  drain_sends(true);
  return result;
}

}  // namespace paratorch::pipeline
