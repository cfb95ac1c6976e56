// src/parallel/compression/powersgd.cpp — PowerSGD as a DDP communication
// hook (paratorch/compression.h; Vogels et al., 2019, Algorithm 1 with the
// warm start and error feedback of §3-4).
#include <paratorch/compression.h>
#include <paratorch/errors.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace paratorch {
namespace {

/// The parameter's gradient as PowerSGD's matrix: first dimension by the rest.
std::pair<int64_t, int64_t> matrix_shape(const std::vector<int64_t>& sizes) {
  int64_t rest = 1;
  for (size_t d = 1; d < sizes.size(); ++d) rest *= sizes[d];
  return {sizes.empty() ? 1 : sizes[0], rest};
}

/// Orthonormal columns in place (Gram-Schmidt, in column order). A column
/// that is all zeros stays zero, so an all-zero gradient approximates to zero.
void orthonormalize(torch::Tensor& p) {
  const int64_t r = p.size(1);
  for (int64_t i = 0; i < r; ++i) {
    auto col = p.select(1, i);
    const double norm = col.norm().item<double>();
    if (norm > 0) col.div_(norm);
    for (int64_t j = i + 1; j < r; ++j) {
      auto other = p.select(1, j);
      other.sub_(col * (col * other).sum());
    }
  }
}

}  // namespace

void PowerSGDOptions::validate() const {
  if (rank < 1) throw UsageError("paratorch: PowerSGDOptions::rank must be >= 1, got " + std::to_string(rank));
  if (start_step < 0)
    throw UsageError("paratorch: PowerSGDOptions::start_step must be >= 0, got " + std::to_string(start_step));
  if (!(min_compression_rate > 0))
    throw UsageError("paratorch: PowerSGDOptions::min_compression_rate must be > 0, got " +
                     std::to_string(min_compression_rate));
}

PowerSGDState::PowerSGDState(PowerSGDOptions options) : options_(options) { options_.validate(); }

void PowerSGDState::check_shapes(const std::vector<std::pair<std::string, std::vector<int64_t>>>& params) const {
  for (const auto& [name, sizes] : params) {
    if (sizes.size() < 2) continue;  // vectors always go uncompressed
    const auto [n, m] = matrix_shape(sizes);
    if (std::min(n, m) < options_.rank)
      throw UsageError("paratorch: PowerSGDOptions::rank = " + std::to_string(options_.rank) + " exceeds the " +
                       std::to_string(n) + " x " + std::to_string(m) + " gradient of '" + name +
                       "'; a rank-r approximation needs r <= " + std::to_string(std::min(n, m)));
  }
}

torch::Tensor PowerSGDState::initial_q(int64_t columns) {
  // The same draws on every rank: one generator per draw, seeded by the
  // options' seed and the draw's index, so resumed runs draw alike too.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(options_.seed * 1000003 + draws_++);
  return torch::randn({columns, options_.rank}, generator, torch::TensorOptions().dtype(torch::kFloat));
}

WorkHandle PowerSGDState::reduce(Communicator& comm, GradBucket& bucket) {
  if (bucket.index == 0) ++passes_;  // buckets run in index order: bucket 0 opens a pass
  if (passes_ <= options_.start_step) return comm_hooks::allreduce()(comm, bucket);
  if (bucket.shard.defined() || bucket.gradients.empty())
    throw UsageError("paratorch: the PowerSGD comm hook reduces all-reduce buckets only (DistributedDataParallel); "
                     "ZeRO's reduce-scatter buckets need comm_hooks::allreduce() or a 16-bit hook");
  torch::NoGradGuard no_grad;
  std::vector<size_t> compressed;
  std::vector<torch::Tensor> whole;  // vectors and matrices not worth compressing
  for (size_t k = 0; k < bucket.gradients.size(); ++k) {
    const auto& g = bucket.gradients[k];
    const auto [n, m] = matrix_shape(g.sizes().vec());
    const double r = options_.rank;
    if (g.dim() >= 2 && std::min(n, m) >= options_.rank &&
        static_cast<double>(n) * static_cast<double>(m) >= options_.min_compression_rate * r * static_cast<double>(n + m))
      compressed.push_back(k);
    else
      whole.push_back(g);
  }
  if (!whole.empty()) {  // one all-reduce of the uncompressed members, averaged over the contributors
    std::vector<torch::Tensor> flats;
    for (auto& t : whole) flats.push_back(t.reshape(-1));
    auto flat = torch::cat(flats);
    comm.all_reduce(flat, ReduceOp::kSum);
    flat.div_(bucket.divisor);
    int64_t offset = 0;
    for (auto& t : whole) {
      t.copy_(flat.narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
  }
  if (!compressed.empty()) compress(comm, bucket, compressed);
  return completed_work();
}

// Algorithm 1 of Vogels et al. over all of the bucket's compressed matrices
// at once: their P's share one all-reduce, their Q's another.
void PowerSGDState::compress(Communicator& comm, GradBucket& bucket, const std::vector<size_t>& members) {
  const int64_t r = options_.rank;
  std::vector<torch::Tensor> ms, qs;
  int64_t p_total = 0, q_total = 0;
  for (size_t k : members) {
    auto& g = bucket.gradients[k];
    const auto [n, m] = matrix_shape(g.sizes().vec());
    Matrix& state = matrices_[bucket.names[k]];
    auto mat = g.view({n, m});
    if (!state.q.defined() || !options_.warm_start) state.q = initial_q(m).to(mat.options());
    if (options_.error_feedback) {
      if (!state.error.defined()) state.error = torch::zeros({n, m}, mat.options());
      mat.add_(state.error);      // M += e: what earlier steps' approximations missed
      state.error.copy_(mat);     // e = M, minus the approximation below
    }
    ms.push_back(mat);
    qs.push_back(state.q);
    p_total += n * r;
    q_total += m * r;
  }
  // P = M·Q for every matrix, summed over the ranks.
  const auto options = ms.front().options();
  auto p_flat = torch::empty({p_total}, options);
  std::vector<torch::Tensor> ps;
  int64_t offset = 0;
  for (size_t i = 0; i < ms.size(); ++i) {
    const int64_t n = ms[i].size(0);
    ps.push_back(p_flat.narrow(0, offset, n * r).view({n, r}));
    torch::mm_out(ps.back(), ms[i], qs[i]);
    offset += n * r;
  }
  comm.all_reduce(p_flat, ReduceOp::kSum);
  // Q = Mᵀ·P with P orthonormal, summed over the ranks: P·Qᵀ is then the
  // projection of the summed M onto P's columns.
  auto q_flat = torch::empty({q_total}, options);
  offset = 0;
  for (size_t i = 0; i < ms.size(); ++i) {
    orthonormalize(ps[i]);
    const int64_t m = ms[i].size(1);
    auto q = q_flat.narrow(0, offset, m * r).view({m, r});
    torch::mm_out(q, ms[i].t(), ps[i]);
    offset += m * r;
  }
  comm.all_reduce(q_flat, ReduceOp::kSum);
  offset = 0;
  for (size_t i = 0; i < ms.size(); ++i) {
    const int64_t m = ms[i].size(1);
    auto q = q_flat.narrow(0, offset, m * r).view({m, r});
    offset += m * r;
    Matrix& state = matrices_[bucket.names[members[i]]];
    state.q = q.clone();  // the next step's warm start
    // M ≈ P·Qᵀ / ranks: the average's approximation, the same on every rank.
    torch::mm_out(ms[i], ps[i], q.t());
    ms[i].div_(bucket.divisor);
    // The error is this rank's M minus what the ranks agreed on, scaled back
    // to this rank's share (Vogels et al.'s e = Δ - decompress(...)).
    if (options_.error_feedback) state.error.sub_(ms[i]);
  }
}

std::map<std::string, torch::Tensor> PowerSGDState::state_tensors() const {
  std::map<std::string, torch::Tensor> out{{"powersgd.passes", torch::tensor(passes_, torch::kLong)},
                                           {"powersgd.draws", torch::tensor(static_cast<int64_t>(draws_), torch::kLong)}};
  for (const auto& [name, state] : matrices_) {
    if (state.q.defined()) out[name + ".powersgd_q"] = state.q;
    if (state.error.defined()) out[name + ".powersgd_error"] = state.error;
  }
  return out;
}

void PowerSGDState::load_state_tensors(const std::map<std::string, torch::Tensor>& state) {
  auto passes = state.find("powersgd.passes");
  auto draws = state.find("powersgd.draws");
  if (passes == state.end() || draws == state.end())
    throw RuntimeFailure("paratorch: PowerSGD state has no 'powersgd.passes' / 'powersgd.draws'");
  passes_ = passes->second.item<int64_t>();
  draws_ = static_cast<uint64_t>(draws->second.item<int64_t>());
  matrices_.clear();
  const std::string q_suffix = ".powersgd_q", e_suffix = ".powersgd_error";
  auto ends_with = [](const std::string& s, const std::string& end) {
    return s.size() > end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
  };
  for (const auto& [key, tensor] : state) {
    if (ends_with(key, q_suffix)) matrices_[key.substr(0, key.size() - q_suffix.size())].q = tensor.clone();
    if (ends_with(key, e_suffix)) matrices_[key.substr(0, key.size() - e_suffix.size())].error = tensor.clone();
  }
}

namespace comm_hooks {
CommHook powersgd(std::shared_ptr<PowerSGDState> state) {
  if (!state) throw UsageError("paratorch: comm_hooks::powersgd needs a PowerSGDState");
  return [state](Communicator& comm, GradBucket& bucket) { return state->reduce(comm, bucket); };
}
}  // namespace comm_hooks

}  // namespace paratorch
