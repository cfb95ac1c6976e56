// bench/allreduce.cpp — paratorch's all_reduce against raw MPI_Allreduce, in
// the same run, 4 KiB to 64 MiB. Run under mpirun -np N.
//
// Both sides reduce the same float32 buffer in place with MPI_SUM. "pt" is
// the blocking call, "async" is all_reduce_async()+wait() through the
// communication thread (what DDP's overlapped buckets use). Rounds
// alternate raw / paratorch (in a rotating order) so drift in machine load hits both equally; each
// size reports the median over rounds of the mean time per op, and the ratios
// are the median over rounds of each round's own ratio (raw and paratorch
// timed seconds apart, so a slow minute of the machine cancels out). Bus bandwidth
// uses the ring all-reduce traffic factor (NCCL's definition):
//   busbw = bytes * 2 * (n - 1) / n / time
// After each size's rounds, every path (raw, pt, async) reduces a buffer of
// small per-rank, per-element integers once more and the result is checked
// exactly (integers below 2^24 are exact in float32, in any summation
// order); a wrong sum on any rank ends the benchmark with exit code 1.
#include <paratorch/world.h>

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename Op>
double time_ops(int reps, Op op) {
  MPI_Barrier(MPI_COMM_WORLD);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) op();
  double local = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
  double slowest = 0;  // an all-reduce is done when the slowest rank is done
  MPI_Allreduce(&local, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest;
}

/// Rank r's element i: small integers, different per element and per rank,
/// so a skipped element, a wrong slot or a missing rank changes the sum.
float pattern(int rank, int64_t i) { return static_cast<float>(rank + 1 + i % 13); }

/// The exact sum over n ranks of pattern(r, i).
float expected_sum(int n, int64_t i) { return static_cast<float>(n * (n + 1) / 2 + n * (i % 13)); }

/// Fills `data` with this rank's pattern, runs `reduce`, and returns the
/// number of elements whose sum is wrong (printing the first one).
int64_t check_sums(const char* path, int rank, int n, float* data, int64_t count, const std::function<void()>& reduce) {
  for (int64_t i = 0; i < count; ++i) data[i] = pattern(rank, i);
  reduce();
  int64_t wrong = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (data[i] == expected_sum(n, i)) continue;
    if (wrong++ == 0)
      std::fprintf(stderr, "allreduce: rank %d: WRONG SUM (%s, %lld floats) at element %lld: got %g, want %g\n",
                   rank, path, static_cast<long long>(count), static_cast<long long>(i), data[i], expected_sum(n, i));
  }
  return wrong;
}

}  // namespace

// Measured as `paratorch` runs: idle compute threads nap (world.h).
PARATORCH_NAP_IDLE_COMPUTE_THREADS();

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  auto comm = world.comm();
  const int n = world.size();
  if (world.rank() == 0) {
    std::printf("allreduce: %d ranks, float32 sum in place, median of rounds\n", n);
    std::printf("%10s %10s %10s %10s %11s %11s %7s %7s\n", "bytes", "raw_us", "pt_us", "async_us",
                "raw_busGB/s", "pt_busGB/s", "ratio", "async");
  }
  int64_t wrong = 0;
  for (int64_t bytes = 4 << 10; bytes <= (64 << 20); bytes *= 4) {
    const int64_t count = bytes / 4;
    auto t = torch::ones({count});
    std::vector<float> raw(static_cast<size_t>(count), 1.0f);
    const int reps = static_cast<int>(std::clamp<int64_t>((256 << 20) / bytes / 8, 2, 200));
    const int rounds = bytes >= (16 << 20) ? 5 : 15;
    auto run_raw = [&] { MPI_Allreduce(MPI_IN_PLACE, raw.data(), static_cast<int>(count), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); };
    auto run_pt = [&] { comm->all_reduce(t); };
    // Through the communication thread, as DDP's overlapped buckets go.
    auto run_async = [&] { comm->all_reduce_async(t)->wait(); };
    time_ops(1, run_raw);  // warm-up (connections, pages)
    time_ops(1, run_pt);
    std::vector<double> raw_s, pt_s, async_s, pt_ratio, async_ratio;
    for (int r = 0; r < rounds; ++r) {
      // The order rotates each round: timing raw MPI against itself this way
      // showed the second slot 1-3% slower (4 ranks, 1 MiB).
      double seconds[3];
      for (int slot = 0; slot < 3; ++slot) {
        const int which = (slot + r) % 3;
        seconds[which] = time_ops(reps, which == 0 ? std::function<void()>(run_raw)
                                        : which == 1 ? std::function<void()>(run_pt)
                                                     : std::function<void()>(run_async));
      }
      raw_s.push_back(seconds[0]);
      pt_s.push_back(seconds[1]);
      async_s.push_back(seconds[2]);
      pt_ratio.push_back(raw_s.back() / pt_s.back());
      async_ratio.push_back(raw_s.back() / async_s.back());
    }
    wrong += check_sums("raw", world.rank(), n, raw.data(), count, run_raw);
    wrong += check_sums("pt", world.rank(), n, t.data_ptr<float>(), count, run_pt);
    wrong += check_sums("async", world.rank(), n, t.data_ptr<float>(), count, run_async);
    double traw = median(raw_s), tpt = median(pt_s), tasync = median(async_s);
    double factor = 2.0 * (n - 1) / n;
    if (world.rank() == 0)
      std::printf("%10lld %10.1f %10.1f %10.1f %11.2f %11.2f %7.3f %7.3f\n", static_cast<long long>(bytes),
                  traw * 1e6, tpt * 1e6, tasync * 1e6, bytes * factor / traw / 1e9,
                  bytes * factor / tpt / 1e9, median(pt_ratio), median(async_ratio));
  }
  // Every rank exits with the same code: a wrong sum anywhere fails the run.
  int64_t wrong_anywhere = 0;
  MPI_Allreduce(&wrong, &wrong_anywhere, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  if (world.rank() == 0)
    std::printf("allreduce: sums checked exactly after every size: %s\n",
                wrong_anywhere == 0 ? "all correct" : "WRONG (see above)");
  return wrong_anywhere == 0 ? 0 : 1;
}
