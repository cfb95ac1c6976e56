// src/verify/check.cpp — the public equivalence check (paratorch/verify.h):
// two trainees, the same batches, the largest relative differences.
#include <paratorch/errors.h>
#include <paratorch/verify.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace paratorch {

Batch local_slice(const Batch& batch, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size)
    throw UsageError("paratorch: local_slice: rank " + std::to_string(rank) + " is outside a group of " +
                     std::to_string(size));
  const int64_t n = batch.size();
  if (n % size != 0)
    throw UsageError("paratorch: a batch of " + std::to_string(n) + " samples does not split over " +
                     std::to_string(size) + " ranks; choose a batch size divisible by " + std::to_string(size));
  const int64_t share = n / size;
  Batch mine;
  mine.input = batch.input.narrow(0, rank * share, share);
  if (batch.target.defined()) mine.target = batch.target.narrow(0, rank * share, share);
  return mine;
}

std::map<std::string, torch::Tensor> named_parameter_copies(const torch::nn::Module& module) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    out[item.key()] = item.value().detach().to(torch::kCPU).clone();
  return out;
}

Trainee plain_trainee(std::shared_ptr<torch::nn::Module> module, std::shared_ptr<torch::optim::Optimizer> optimizer,
                      std::function<torch::Tensor(const Batch&)> loss_of) {
  Trainee t;
  t.step = [module, optimizer, loss_of](const Batch& batch) {
    optimizer->zero_grad();
    auto loss = loss_of(batch);
    loss.backward();
    optimizer->step();
    return loss.item<double>();
  };
  t.full_parameters = [module] { return named_parameter_copies(*module); };
  return t;
}

void EquivalenceOptions::validate() const {
  if (steps < 1)
    throw UsageError("paratorch: EquivalenceOptions::steps must be >= 1, got " + std::to_string(steps));
  if (!(tolerance > 0))
    throw UsageError("paratorch: EquivalenceOptions::tolerance must be > 0, got " + std::to_string(tolerance));
}

std::string EquivalenceReport::summary_line(const std::string& what) const {
  char buf[512];
  std::snprintf(buf, sizeof buf, "verify: %s steps=%zu max_rel_loss_diff=%.3e max_rel_param_diff=%.3e %s",
                what.c_str(), parallel_losses.size(), max_rel_loss_diff, max_rel_param_diff, pass ? "PASS" : "FAIL");
  return buf;
}

namespace {

std::vector<double> run(const Trainee& trainee, const std::function<Batch(int64_t)>& batches, int steps) {
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) losses.push_back(trainee.step(batches(s)));
  return losses;
}

// NaN counts as infinitely far: std::max would drop it silently.
double finite_or_inf(double d) { return std::isnan(d) ? INFINITY : d; }

double rel_diff(double a, double b) { return finite_or_inf(std::abs(a - b) / std::max(std::abs(b), 1e-30)); }

/// ||a - b|| / ||b|| (absolute when b is all zeros), in double.
double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  auto da = a.to(torch::kDouble), db = b.to(torch::kDouble);
  const double num = (da - db).norm().item<double>(), den = db.norm().item<double>();
  return finite_or_inf(den > 0 ? num / den : num);
}

}  // namespace

EquivalenceReport check_equivalence(std::shared_ptr<Communicator> world, const std::function<Batch(int64_t)>& batches,
                                    const std::function<Trainee()>& make_reference,
                                    const std::function<Trainee()>& make_parallel, EquivalenceOptions options) {
  options.validate();
  EquivalenceReport report;
  Trainee reference = make_reference();
  report.reference_losses = run(reference, batches, options.steps);
  const auto ref_params = reference.full_parameters();
  reference = Trainee{};

  Trainee parallel = make_parallel();
  report.parallel_losses = run(parallel, batches, options.steps);
  const auto par_params = parallel.full_parameters();

  for (int s = 0; s < options.steps; ++s)
    report.max_rel_loss_diff = std::max(report.max_rel_loss_diff,
                                        rel_diff(report.parallel_losses[s], report.reference_losses[s]));
  for (const auto& [name, ref] : ref_params) {
    auto it = par_params.find(name);
    if (it == par_params.end())
      throw RuntimeFailure("paratorch: check_equivalence: the parallel run has no parameter '" + name +
                           "'; its full_parameters() must name every parameter as the unparallelized model does");
    if (!it->second.sizes().equals(ref.sizes()))
      throw RuntimeFailure("paratorch: check_equivalence: parameter '" + name + "' has shape " +
                           c10::str(it->second.sizes()) + " in the parallel run and " + c10::str(ref.sizes()) +
                           " in the reference; full_parameters() must return whole (unsharded) tensors");
    const double d = rel_diff(it->second, ref);
    if (d > report.max_rel_param_diff || report.worst_param.empty()) {
      report.max_rel_param_diff = std::max(report.max_rel_param_diff, d);
      report.worst_param = name;
    }
  }
  bool ok = report.max_rel_loss_diff <= options.tolerance &&
            (!options.judge_parameters || report.max_rel_param_diff <= options.tolerance);
  auto verdict = torch::tensor({ok ? 0 : 1}, torch::kInt);
  if (world) world->all_reduce(verdict, ReduceOp::kMax);
  report.pass = verdict.item<int>() == 0;
  return report;
}

}  // namespace paratorch
