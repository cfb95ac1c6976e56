// src/plan/calibrate.cpp — see calibrate.h.
#include "plan/calibrate.h"

#include "models/gpt.h"
#include "models/mlp.h"
#include "optim/optimizer.h"
#include "parallel/mixed_precision/precision.h"
#include "plan/predict.h"

#include <paratorch/errors.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <iomanip>
#include <sstream>

namespace paratorch::plan {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Seconds per call of `f`: each round repeats it for at least min_seconds;
// the median round counts (one warm-up call first).
double seconds_per_call(const std::function<void()>& f, const CalibrateOptions& o) {
  f();
  std::vector<double> rounds;
  for (int r = 0; r < o.rounds; ++r) {
    int calls = 0;
    const auto start = Clock::now();
    double elapsed = 0;
    do {
      f();
      ++calls;
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    } while (elapsed < o.min_seconds);
    rounds.push_back(elapsed / calls);
  }
  return median(rounds);
}

// The same over a communicator: every rank runs `calls` calls per round
// (a fixed count, so the ranks stay matched), after a barrier.
double collective_seconds(Communicator& comm, const std::function<void()>& f, int calls, int rounds) {
  f();
  std::vector<double> per_call;
  for (int r = 0; r < rounds; ++r) {
    comm.barrier();
    const auto start = Clock::now();
    for (int i = 0; i < calls; ++i) f();
    per_call.push_back(std::chrono::duration<double>(Clock::now() - start).count() / calls);
  }
  return median(per_call);
}

torch::ScalarType dtype_of(const std::string& precision) {
  return mixed_precision::precision_dtype(precision, "CalibrateOptions::precision");
}

// One product forward and backward (both input gradients: dA = dC B^T,
// dB = A^T dC), as a layer runs it: 3x the forward's FLOPs.
GemmSample time_gemm(int64_t batch, int64_t rows, int64_t inner, int64_t cols, const CalibrateOptions& o) {
  const auto opts = torch::TensorOptions().dtype(dtype_of(o.precision));
  const torch::Tensor a = torch::randn({batch, rows, inner}, opts).requires_grad_(),
                      b = torch::randn({batch, inner, cols}, opts).requires_grad_();
  const torch::Tensor grad = torch::randn({batch, rows, cols}, opts);
  const double s = seconds_per_call([&] { torch::bmm(a, b).backward(grad); }, o);
  GemmSample g{rows, inner, cols, batch, 0};
  g.flops_per_s = 3 * 2.0 * static_cast<double>(batch * rows * inner * cols) / s;
  return g;
}

// The peak: the fastest square product, forward only.
double square_flops_per_s(const CalibrateOptions& o) {
  const auto opts = torch::TensorOptions().dtype(dtype_of(o.precision));
  const torch::Tensor a = torch::randn({1024, 1024}, opts), b = torch::randn({1024, 1024}, opts);
  torch::Tensor c = torch::empty({1024, 1024}, opts);
  return 2.0 * 1024 * 1024 * 1024 / seconds_per_call([&] { torch::mm_out(c, a, b); }, o);
}

// The products a layer of `m` runs for a micro-batch of `tokens` rows.
std::vector<GemmSample> model_gemms(const CalibrateOptions& o) {
  const ModelShape& m = o.model;
  const int64_t h = m.hidden, T = std::max<int64_t>(1, o.microbatch_tokens);
  std::vector<GemmSample> out;
  for (int64_t tp : {1, 2, 4}) {
    if (h % tp || h / tp < 8) continue;
    out.push_back(time_gemm(1, T, h, h / tp, o));  // column-parallel: narrow output
    out.push_back(time_gemm(1, T, h / tp, h, o));  // row-parallel: narrow inner dimension
  }
  if (m.family == ModelShape::Family::kGpt && m.heads > 1 && T >= m.seq) {
    const int64_t head = h / m.heads, seqs = T / m.seq;
    out.push_back(time_gemm(seqs * m.heads, m.seq, head, m.seq, o));  // scores q k^T
    out.push_back(time_gemm(seqs * m.heads, m.seq, m.seq, head, o));  // context p v
  }
  for (int64_t rows : {T / 4, T / 2}) {  // fewer rows than columns: the mlp's micro-batches
    if (rows >= 4 && rows < h) out.push_back(time_gemm(1, rows, h, 4 * h, o));
  }
  return out;
}

// The bandwidth at which the cost model's optimizer bytes per parameter
// (plan/predict.h) take as long as a step does here: paratorch's own
// optimizer over 4M parameters (a 2-D weight, decayed), with the gradient's
// norm before it and its zeroing after, as the training loop runs them.
double optimizer_bytes_per_s(const CalibrateOptions& o) {
  const int64_t n = int64_t{4} << 20;
  torch::Tensor w = torch::randn({n / 1024, 1024}).requires_grad_();
  w.mutable_grad() = torch::randn_like(w);
  optim::NamedTensors params = {{"w", w}};
  optim::OptimizerOptions options;
  options.kind = o.optimizer == "sgd" ? optim::OptimizerKind::kSgd : optim::OptimizerKind::kAdamW;
  auto optimizer = optim::make_optimizer(options, params);
  const double s = seconds_per_call(
      [&] {
        const double norm = w.grad().norm().item<double>();
        optimizer->step(1e-6, 1 / (1 + norm));
        optim::zero_gradients(params);
      },
      o);
  return optimizer_bytes_per_parameter("fp32", o.optimizer) * static_cast<double>(n) / s;
}

// One of the bundled model's layers (gpt's block, the mlp's block) forward
// and backward on a micro-batch of `microbatch_tokens` rows.
double layer_seconds(const CalibrateOptions& o) {
  const ModelShape& m = o.model;
  const auto dtype = dtype_of(o.precision);
  torch::nn::AnyModule block;
  torch::Tensor x;
  if (m.family == ModelShape::Family::kGpt) {
    block = torch::nn::AnyModule(models::GptBlock(static_cast<int>(m.hidden), static_cast<int>(m.heads)));
    x = torch::randn({std::max<int64_t>(1, o.microbatch_tokens / m.seq), m.seq, m.hidden});
  } else {
    block = torch::nn::AnyModule(models::MlpBlock(static_cast<int>(m.hidden)));
    x = torch::randn({o.microbatch_tokens, m.hidden});
  }
  block.ptr()->to(dtype);
  x = x.to(dtype).requires_grad_();
  const torch::Tensor grad = torch::randn_like(x);
  return seconds_per_call([&] { block.forward(x).backward(grad); }, o);
}

// The cost model's per-layer time is GEMM time plus an element-wise term,
// the layer's stored-activation bytes moved once per forward and twice per
// backward at elementwise_gbps (plan/predict.h). That is the bandwidth at
// which that sum equals a measured layer: what the layer takes beyond its
// products (on the fitted GEMM curve) is its element-wise work.
double elementwise_bytes_per_s(const CalibrateOptions& o, const Cluster& c, double peak) {
  const ModelShape& m = o.model;
  const double value = o.precision == "fp32" ? 4 : 2;
  const int64_t b = m.family == ModelShape::Family::kGpt ? std::max<int64_t>(1, o.microbatch_tokens / m.seq)
                                                          : o.microbatch_tokens;
  const double rows = static_cast<double>(b * m.seq);
  auto rate = [&](double n) { return peak * gemm_efficiency(n, c.gemm_efficiency, c.gemm_half_dim); };
  const double attention = m.attention_forward_flops(b, 1);
  const double gemms = 3 * ((m.layer_forward_flops(b, 1) - attention) / rate(std::min<double>(m.hidden, rows)) +
                            (attention > 0 ? attention / rate(std::min<double>(m.hidden / m.heads, m.seq)) : 0));
  const double measured = layer_seconds(o);
  // At least a tenth of the layer: a GEMM fit that over-predicts must not
  // make the element-wise work free.
  const double elementwise = std::max(measured - gemms, 0.1 * measured);
  return 3 * m.layer_activation_bytes(b, 1, false, value) / elementwise;
}

std::vector<CommSample> measure_links(Communicator& comm, const CalibrateOptions& o) {
  std::vector<CommSample> out;
  for (int64_t bytes : {int64_t{4} << 10, int64_t{64} << 10, int64_t{1} << 20, int64_t{8} << 20}) {
    const int calls = bytes >= (int64_t{1} << 20) ? 4 : 20;
    torch::Tensor t = torch::ones({bytes / 4});
    const double ar = collective_seconds(comm, [&] { comm.all_reduce(t); }, calls, o.rounds);
    out.push_back({false, comm.size(), static_cast<double>(bytes), ar});
    // Ping-pong between ranks 0 and 1: half a round trip is one transfer.
    const double round_trip = collective_seconds(
        comm,
        [&] {
          if (comm.rank() == 0) comm.send(t, 1), comm.recv(t, 1);
          else if (comm.rank() == 1) comm.recv(t, 0), comm.send(t, 0);
        },
        calls, o.rounds);
    out.push_back({true, 2, static_cast<double>(bytes), round_trip / 2});
  }
  return out;
}

}  // namespace

void CalibrateOptions::validate() const {
  auto positive = [](const char* field, double v) {
    if (!(v > 0)) throw UsageError(std::string("paratorch: CalibrateOptions::") + field + " = " + std::to_string(v) +
                                   " must be > 0");
  };
  positive("microbatch_tokens", static_cast<double>(microbatch_tokens));
  positive("ranks_per_node", ranks_per_node);
  positive("cores_per_node", cores_per_node);
  positive("memory_gb", memory_gb);
  positive("min_seconds", min_seconds);
  positive("rounds", rounds);
  dtype_of(precision);
  if (optimizer != "adamw" && optimizer != "sgd")
    throw UsageError("paratorch: CalibrateOptions::optimizer = \"" + optimizer + "\": use adamw or sgd");
}

double GemmSample::narrow() const { return static_cast<double>(std::min({rows, inner, cols})); }

std::pair<double, double> fit_gemm_curve(const std::vector<GemmSample>& samples, double peak_flops) {
  if (samples.size() < 2) throw UsageError("paratorch: calibrate: the GEMM fit needs two shapes or more");
  // Least squares in log space (every shape weighs by its relative error):
  // for a given H the best log E is the mean of log eff_i - log(n_i/(n_i+H)),
  // so only H is searched: a log-spaced scan, then golden-section refinement.
  auto fit_for = [&](double H) {
    double mean = 0;
    for (const auto& g : samples) mean += std::log(g.flops_per_s / peak_flops) - std::log(g.narrow() / (g.narrow() + H));
    mean /= static_cast<double>(samples.size());
    const double log_e = std::min(mean, 0.0);  // E never above the peak
    double error = 0;
    for (const auto& g : samples) {
      const double r = std::log(g.flops_per_s / peak_flops) - log_e - std::log(g.narrow() / (g.narrow() + H));
      error += r * r;
    }
    return std::make_pair(error, std::exp(log_e));
  };
  double best = 0, best_error = fit_for(0).first;
  for (double H = 0.25; H <= 65536; H *= 1.1)
    if (const double e = fit_for(H).first; e < best_error) best_error = e, best = H;
  double lo = best / 1.1, hi = best == 0 ? 0.25 : best * 1.1;
  const double phi = (std::sqrt(5.0) - 1) / 2;
  for (int i = 0; i < 80; ++i) {
    const double a = hi - phi * (hi - lo), b = lo + phi * (hi - lo);
    if (fit_for(a).first < fit_for(b).first) hi = b;
    else lo = a;
  }
  const double H = fit_for((lo + hi) / 2).first < best_error ? (lo + hi) / 2 : best;
  return {fit_for(H).second, H};
}

std::pair<double, double> fit_alpha_beta(const std::vector<CommSample>& samples) {
  // t = p alpha + q S (1/beta), with p, q the formula's coefficients; each
  // row divided by t, so every size weighs by its relative error.
  double s11 = 0, s12 = 0, s22 = 0, r1 = 0, r2 = 0;
  for (const auto& c : samples) {
    const double n = c.ranks;
    const double p = c.p2p ? 1 : 2 * (n - 1), q = (c.p2p ? 1 : 2 * (n - 1) / n) * c.bytes;
    const double u = p / c.seconds, v = q / c.seconds;
    s11 += u * u, s12 += u * v, s22 += v * v, r1 += u, r2 += v;
  }
  const double det = s11 * s22 - s12 * s12;
  if (samples.size() < 2 || det <= 0) throw UsageError("paratorch: calibrate: the link fit needs two distinct sizes");
  const double alpha = std::max(0.0, (r1 * s22 - r2 * s12) / det);
  const double inverse_beta = (s11 * r2 - s12 * r1) / det;
  if (!(inverse_beta > 0)) throw RuntimeFailure("paratorch: calibrate: transfer times do not grow with size; rerun on a quieter machine");
  return {alpha, 1 / inverse_beta};
}

Calibration calibrate(const CalibrateOptions& o, Communicator* comm) {
  o.validate();
  Calibration cal;
  Cluster& c = cal.cluster;
  c.nodes = 1;
  c.gpus_per_node = o.ranks_per_node;
  c.cores_per_node = o.cores_per_node;
  c.memory_gb = o.memory_gb;
  try {
    cal.gemms = model_gemms(o);
  } catch (const c10::Error&) {
    throw UsageError("paratorch: calibrate: this libtorch cannot multiply " + o.precision +
                     " matrices on this machine; set CalibrateOptions::precision = \"fp32\"");
  }
  double peak = square_flops_per_s(o);
  for (const auto& g : cal.gemms) peak = std::max(peak, g.flops_per_s);
  c.peak_tflops[o.precision] = peak / 1e12;
  std::tie(c.gemm_efficiency, c.gemm_half_dim) = fit_gemm_curve(cal.gemms, peak);
  c.memory_gbps = optimizer_bytes_per_s(o) / 1e9;
  c.elementwise_gbps = elementwise_bytes_per_s(o, c, peak) / 1e9;
  if (comm && comm->size() > 1) {
    cal.comms = measure_links(*comm, o);
    const auto [alpha, beta] = fit_alpha_beta(cal.comms);
    c.intra_node_latency_us = c.inter_node_latency_us = alpha * 1e6;
    c.intra_node_gbps = c.inter_node_gbps = beta / 1e9;
  }
  c.validate();
  return cal;
}

std::string cluster_toml(const Calibration& cal, const std::string& precision) {
  const Cluster& c = cal.cluster;
  std::ostringstream out;
  out << std::setprecision(4);
  out << "# This machine, measured by `paratorch plan --calibrate` (docs/plan.md).\n"
      << "# GEMM samples (rows x inner x cols [x batch]: GFLOP/s):\n";
  for (const auto& g : cal.gemms)
    out << "#   " << g.rows << " x " << g.inner << " x " << g.cols << (g.batch > 1 ? " x " + std::to_string(g.batch) : "")
        << ": " << g.flops_per_s / 1e9 << "\n";
  if (cal.comms.empty()) {
    out << "# Links: not measured (one rank); the link keys keep their defaults.\n";
  } else {
    out << "# Link samples (bytes: microseconds):\n";
    for (const auto& s : cal.comms)
      out << "#   " << (s.p2p ? "p2p" : "all-reduce over " + std::to_string(s.ranks)) << " " << s.bytes << ": "
          << s.seconds * 1e6 << "\n";
    out << "# One node: the inter-node keys repeat the intra-node fit.\n";
  }
  out << "[cluster]\n"
      << "nodes = " << c.nodes << "\n"
      << "gpus_per_node = " << c.gpus_per_node << "\n"
      << "cores_per_node = " << c.cores_per_node << "\n"
      << "peak_tflops = { " << precision << " = " << c.peak_tflops.at(precision) << " }\n"
      << "memory_gb = " << c.memory_gb << "\n"
      << "memory_gbps = " << c.memory_gbps << "\n"
      << "elementwise_gbps = " << c.elementwise_gbps << "\n"
      << "gemm_efficiency = " << c.gemm_efficiency << "\n"
      << "gemm_half_dim = " << c.gemm_half_dim << "\n"
      << "intra_node_gbps = " << c.intra_node_gbps << "\n"
      << "inter_node_gbps = " << c.inter_node_gbps << "\n"
      << "intra_node_latency_us = " << c.intra_node_latency_us << "\n"
      << "inter_node_latency_us = " << c.inter_node_latency_us << "\n";
  return out.str();
}

}  // namespace paratorch::plan
