// src/parallel/async/parameter_server_state.cpp — ParameterServer's
// checkpoints (paratorch/async.h): the servers' rows of the parameters and
// of the optimizer state joined into whole tensors by the module's names,
// and any layout's whole tensors cut back into a server's rows, so a
// parameter server saves and resumes in the format every paratorch layout
// reads (paratorch/checkpoint.h).
#include <paratorch/async.h>
#include <paratorch/errors.h>

#include "parallel/async/ps_server.h"
#include "parallel/async/shard_plan.h"

namespace paratorch {
namespace {

// Group rank 0's words on every rank (rank 0 is a server: it knows what its
// optimizer keeps; a worker does not). A word starting with '!' is an error
// rank 0 met, which every rank then throws.
std::vector<std::string> words_from_rank0(Communicator& group, const std::vector<std::string>& words) {
  std::string joined;
  for (const auto& w : words) joined += w + "\n";
  auto length = torch::tensor({static_cast<int64_t>(joined.size())}, torch::kLong);
  group.broadcast(length, 0);
  auto bytes = torch::zeros({length.item<int64_t>()}, torch::kLong);
  if (group.rank() == 0)
    for (size_t i = 0; i < joined.size(); ++i) bytes[static_cast<int64_t>(i)] = static_cast<int64_t>(joined[i]);
  if (bytes.numel() > 0) group.broadcast(bytes, 0);
  std::vector<std::string> out(1);
  const auto* b = bytes.data_ptr<int64_t>();
  for (int64_t i = 0; i < bytes.numel(); ++i)
    if (b[i] == '\n')
      out.emplace_back();
    else
      out.back() += static_cast<char>(b[i]);
  out.pop_back();  // after the last '\n'
  if (!out.empty() && !out.front().empty() && out.front()[0] == '!') throw UsageError(out.front().substr(1));
  return out;
}

}  // namespace

// The servers' state by piece key becomes whole tensors by name: each
// server writes its rows into zeros of every (parameter, kind), and one sum
// over the group assembles them (each row is one server's). Which
// parameters have state yet, and their step counts, cross by maximum.
TrainingState ParameterServer::training_state(int64_t step) {
  TrainingState out;
  out.step = step;
  out.layout = "ps servers=" + std::to_string(options_.servers) + " workers=" + std::to_string(workers_);
  out.model = full_parameters();
  std::vector<std::string> kinds;
  if (group_->rank() == 0) {
    try {
      kinds = server_->optimizer_state_kinds();
    } catch (const UsageError& e) {
      kinds = {std::string("!") + e.what()};
    }
  }
  kinds = words_from_rank0(*group_, kinds);
  const std::map<std::string, torch::Tensor> mine =
      server_ ? server_->optimizer_state() : std::map<std::string, torch::Tensor>{};
  const std::vector<async::Piece> pieces = server_ ? plan_->pieces_of(group_->rank()) : std::vector<async::Piece>{};
  const auto n = static_cast<int64_t>(params_.size());
  auto has = torch::zeros({n}, torch::kLong), steps = torch::zeros({n}, torch::kLong);
  for (const auto& piece : pieces) {
    if (kinds.empty() || !mine.count(piece.key + "." + kinds.front())) continue;
    const auto p = static_cast<int64_t>(piece.param);
    has[p] = 1;
    if (auto it = mine.find(piece.key + ".step"); it != mine.end())
      steps[p] = std::max(steps[p].item<int64_t>(), it->second.item<int64_t>());
  }
  group_->all_reduce(has, ReduceOp::kMax);
  group_->all_reduce(steps, ReduceOp::kMax);
  int64_t numel = 0;  // one flat buffer: every (parameter with state, kind)
  for (int64_t p = 0; p < n; ++p)
    if (has[p].item<int64_t>())
      numel += params_[static_cast<size_t>(p)].second.numel() * static_cast<int64_t>(kinds.size());
  auto flat = torch::zeros({numel}, torch::kFloat);
  std::map<std::string, torch::Tensor> whole;  // "<name>.<kind>" -> its view of flat
  int64_t offset = 0;
  for (int64_t p = 0; p < n; ++p) {
    if (!has[p].item<int64_t>()) continue;
    const auto& [name, param] = params_[static_cast<size_t>(p)];
    for (const auto& kind : kinds) {
      whole[name + "." + kind] = flat.narrow(0, offset, param.numel()).view(param.sizes());
      offset += param.numel();
    }
  }
  for (const auto& piece : pieces)
    for (const auto& kind : kinds)
      if (auto it = mine.find(piece.key + "." + kind); it != mine.end())
        async::piece_view(whole.at(piece.name + "." + kind), piece).copy_(it->second);
  group_->all_reduce(flat, ReduceOp::kSum);
  for (const auto& [key, view] : whole) out.optimizer[key] = view.clone();
  for (int64_t p = 0; p < n; ++p)
    if (has[p].item<int64_t>())
      out.optimizer[params_[static_cast<size_t>(p)].first + ".step"] =
          torch::tensor({steps[p].item<int64_t>()}, torch::kLong);
  return out;
}

void ParameterServer::load(const TrainingState& state) {
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : params_) {
      auto it = state.model.find(name);
      if (it == state.model.end())
        throw RuntimeFailure("paratorch: the checkpoint lacks parameter '" + name +
                             "' of the ParameterServer's module");
      if (!it->second.sizes().equals(p.sizes()))
        throw RuntimeFailure("paratorch: checkpoint tensor '" + name + "' has shape " + c10::str(it->second.sizes()) +
                             ", the module's parameter has " + c10::str(p.sizes()));
      p.detach().copy_(it->second);
    }
  }
  // A server that cannot take its rows tells the others, rather than leave
  // them waiting for it at the next collective.
  std::exception_ptr error;
  if (server_) {
    try {
      const auto pieces = plan_->pieces_of(group_->rank());
      auto optimizer = async::pieces_from_whole(state.optimizer, pieces);
      optimizer["step"] = torch::tensor({state.step}, torch::kLong);  // the version workers pull
      server_->load(async::pieces_from_whole(state.model, pieces), optimizer);
      server_->start_at(state.step);
    } catch (...) {
      error = std::current_exception();
    }
  }
  auto failed = torch::tensor({error ? group_->rank() : -1}, torch::kLong);
  group_->all_reduce(failed, ReduceOp::kMax);
  if (error) std::rethrow_exception(error);
  if (failed.item<int64_t>() >= 0)
    throw RuntimeFailure("paratorch: ParameterServer::load failed on server group rank " +
                         std::to_string(failed.item<int64_t>()) + " (its message names what to change)");
  step_ = round_ = state.step;
}

}  // namespace paratorch
