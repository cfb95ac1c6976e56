// src/comm/measured_choice.cpp — see measured_choice.h.
#include "comm/measured_choice.h"

#include <algorithm>
#include <chrono>
#include <vector>

namespace paratorch::comm {

bool MeasuredChoice::candidate_wins(MPI_Comm comm, int64_t bytes, int reps, const Path& candidate,
                                    const Path& baseline) {
  int size_class = 0;
  while ((int64_t{2} << size_class) <= bytes) ++size_class;  // 2^class <= bytes < 2^(class+1)
  if (auto it = verdicts_.find(size_class); it != verdicts_.end()) return it->second;
  // Plain buffers and from_blob: this runs on the communication thread,
  // which must not start torch's thread pool (torch::ones would).
  const int64_t n = (int64_t{1} << size_class) / static_cast<int64_t>(sizeof(float));
  std::vector<float> a(static_cast<size_t>(n), 1.0f), b(static_cast<size_t>(n), 1.0f);
  torch::Tensor scratch_a = torch::from_blob(a.data(), {n}, torch::kFloat);
  torch::Tensor scratch_b = torch::from_blob(b.data(), {n}, torch::kFloat);
  double seconds[2] = {1e30, 1e30};
  auto time_into = [](double& best, const Path& path, torch::Tensor& scratch) {
    const auto start = std::chrono::steady_clock::now();
    path(scratch);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  };
  for (int rep = 0; rep < reps; ++rep) {
    time_into(seconds[0], candidate, scratch_a);
    time_into(seconds[1], baseline, scratch_b);
  }
  MPI_Allreduce(MPI_IN_PLACE, seconds, 2, MPI_DOUBLE, MPI_MAX, comm);  // the slowest rank's, so all agree
  return verdicts_[size_class] = seconds[0] < 0.95 * seconds[1];
}

}  // namespace paratorch::comm
