// bench/allreduce_cluster.cpp — the hierarchical all-reduce (reduce-scatter
// inside each host, all-reduce of each slice across hosts, all-gather inside
// each host: src/comm/hierarchical_all_reduce.h) against flat MPI_Allreduce over every
// rank, in the same run. Run across hosts (bench/allreduce_cluster_compare
// runs it on namespace hosts through scripts/cluster):
//   bench_allreduce_cluster [ROUNDS]
// Sizes 1, 4 and 16 MiB of float32, summed in place. Rounds alternate
// flat / hierarchical (in a rotating order) so a slow moment of the machine
// hits both; each size reports the median over rounds of each path's time
// (the slowest rank's) and the median of each round's own ratio. Bandwidth
// is the bus bandwidth (NCCL's definition: bytes * 2 (n - 1) / n / time).
// Each size ends with both paths summing small integers, checked exactly; a
// wrong sum ends the benchmark with exit code 1. The last lines, one per
// size, are for scripts:
//   allreduce_cluster: bytes=B hosts=H ranks=N flat_ms=F hier_ms=H speedup=S auto=hier|flat
#include "comm/hierarchical_all_reduce.h"

#include <paratorch/world.h>

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// One op's time on the slowest rank.
double time_op(const std::function<void()>& op) {
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = std::chrono::steady_clock::now();
  op();
  double local = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), slowest = 0;
  MPI_Allreduce(&local, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest;
}

/// Sums rank + 1 + i % 13 over the ranks with `reduce`; counts wrong elements.
int64_t wrong_sums(int rank, int n, std::vector<float>& data, const std::function<void()>& reduce) {
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(rank + 1 + static_cast<int64_t>(i) % 13);
  reduce();
  int64_t wrong = 0;
  for (size_t i = 0; i < data.size(); ++i)
    wrong += data[i] != static_cast<float>(n * (n + 1) / 2 + n * (static_cast<int64_t>(i) % 13));
  return wrong;
}

}  // namespace

PARATORCH_NAP_IDLE_COMPUTE_THREADS();

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  const int rounds = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  const int rank = world.rank(), n = world.size();
  MPI_Comm comm;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  auto hier = paratorch::comm::HierarchicalAllReduce::create(comm);
  if (!hier) {
    if (rank == 0)
      std::fprintf(stderr, "allreduce_cluster: the ranks are on one host, or one per host: nothing hierarchical to "
                           "measure (run it through scripts/cluster with --ranks-per-host 2 or more)\n");
    return 2;
  }
  if (rank == 0) {
    std::printf("allreduce_cluster: %d ranks on %d hosts, float32 sum in place, median of %d rounds\n", n,
                hier->hosts(), rounds);
    std::printf("%10s %9s %9s %12s %12s %8s\n", "bytes", "flat_ms", "hier_ms", "flat_busGB/s", "hier_busGB/s",
                "speedup");
  }
  std::vector<std::string> lines;
  int64_t wrong = 0;
  for (int64_t bytes : {int64_t{1} << 20, int64_t{4} << 20, int64_t{16} << 20}) {
    const int64_t count = bytes / 4;
    std::vector<float> a(static_cast<size_t>(count), 1.0f);
    torch::Tensor t = torch::from_blob(a.data(), {count}, torch::kFloat);
    auto flat = [&] { MPI_Allreduce(MPI_IN_PLACE, a.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, comm); };
    auto tiered = [&] { hier->run(t, paratorch::ReduceOp::kSum); };
    flat();  // warm both paths' connections
    tiered();
    std::vector<double> f, h, ratio;
    for (int r = 0; r < rounds; ++r) {
      double tf = 0, th = 0;
      if (r % 2 == 0) { tf = time_op(flat); th = time_op(tiered); }
      else { th = time_op(tiered); tf = time_op(flat); }
      f.push_back(tf);
      h.push_back(th);
      ratio.push_back(tf / th);
    }
    wrong += wrong_sums(rank, n, a, flat) + wrong_sums(rank, n, a, tiered);
    const bool pick = hier->beats_flat(bytes);  // what the communicator would choose
    const double bus = static_cast<double>(bytes) * 2.0 * (n - 1) / n / 1e9;
    if (rank == 0) {
      std::printf("%10lld %9.1f %9.1f %12.3f %12.3f %7.2fx\n", static_cast<long long>(bytes), median(f) * 1e3,
                  median(h) * 1e3, bus / median(f), bus / median(h), median(ratio));
      char line[256];
      std::snprintf(line, sizeof line,
                    "allreduce_cluster: bytes=%lld hosts=%d ranks=%d flat_ms=%.1f hier_ms=%.1f speedup=%.2f auto=%s",
                    static_cast<long long>(bytes), hier->hosts(), n, median(f) * 1e3, median(h) * 1e3, median(ratio),
                    pick ? "hier" : "flat");
      lines.push_back(line);
    }
  }
  int64_t total_wrong = 0;
  MPI_Allreduce(&wrong, &total_wrong, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  for (const auto& l : lines) std::printf("%s\n", l.c_str());
  if (total_wrong > 0 && rank == 0) std::fprintf(stderr, "allreduce_cluster: WRONG SUMS: %lld elements\n",
                                                 static_cast<long long>(total_wrong));
  hier.reset();
  MPI_Comm_free(&comm);
  return total_wrong > 0 ? 1 : 0;
}
