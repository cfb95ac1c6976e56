// paratorch/world.h — this process's place in the job: MPI start-up, rank,
// size, local rank, device and thread budget, and the world communicator.
//
// Example:
///   int main(int argc, char** argv) {
///     paratorch::World world(argc, argv);          // MPI_Init_thread, threads, device
///     auto comm = world.comm();                    // every rank of the job
///     std::cout << world.rank() << "/" << world.size() << " on " << world.device() << "\n";
///   }                                              // MPI_Finalize
#pragma once
#include <paratorch/communicator.h>
#include <paratorch/flight_recorder.h>

#include <torch/torch.h>

#include <memory>
#include <string>

namespace paratorch {

struct WorldOptions {
  /// Intra-op threads per rank (torch and OpenBLAS). 0 = this node's cores
  /// divided by the ranks on this node, at least 1, so ranks sharing a node do
  /// not oversubscribe its cores.
  int threads_per_rank = 0;
  /// Keep freed large blocks in glibc's heap instead of returning them to
  /// the OS. A training step frees and reallocates the same activations
  /// every step; by default glibc unmaps blocks above its mmap threshold and
  /// the next step page-faults them back in. Measured on the mlp benchmark
  /// (batch 64): ~20k page faults per step, 270 ms/step instead of 55.
  bool tune_malloc = true;
  /// Deadline and debug settings inherited by every communicator.
  CommOptions comm;
  /// The record of each rank's last operations, written when a job hangs
  /// (paratorch/flight_recorder.h).
  FlightRecorderOptions flight;
  void validate() const;
};

/// Owns MPI for the life of the process: construct one at the top of main.
class World {
 public:
  World(int& argc, char**& argv, WorldOptions options = {});
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// Rank and rank count among the processes on this node.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  /// CUDA device local_rank % device_count when CUDA is available, else CPU.
  torch::Device device() const { return device_; }
  /// Intra-op threads this rank uses.
  int threads() const { return threads_; }
  /// MPI thread support level that MPI provided (e.g. "MPI_THREAD_MULTIPLE").
  const std::string& thread_level() const { return thread_level_; }
  const CommOptions& comm_options() const { return options_.comm; }
  /// The communicator of every rank.
  std::shared_ptr<Communicator> comm() const { return comm_; }

 private:
  WorldOptions options_;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1, threads_ = 1;
  torch::Device device_{torch::kCPU};
  std::string thread_level_;
  std::shared_ptr<Communicator> comm_;
  bool owns_mpi_ = false;
};

/// Sets torch's intra-op threads and OpenBLAS's own pool (which otherwise runs
/// beside torch's OpenMP threads and oversubscribes the cores).
void set_compute_threads(int threads);

/// Cores this process may run on (its CPU affinity mask).
int available_cores();

/// Opt-in, once per program: idle compute threads nap instead of spinning.
/// libtorch's OpenMP pool and OpenBLAS's own pool take turns on the same
/// cores, and by default each idle worker spins long enough to hold a core
/// the other pool needs next (on 2 cores, a gpt step took 755 ms with the
/// defaults and 330 ms with napping workers). Both libraries read their
/// settings (OMP_WAIT_POLICY, OPENBLAS_THREAD_TIMEOUT) once, before main, so
/// this cannot be a WorldOptions field: a program that wants it writes, at
/// namespace scope in its own main.cpp,
///   PARATORCH_NAP_IDLE_COMPUTE_THREADS();
/// and, when either variable is missing from its environment, the program
/// re-executes itself once before any constructor runs with
/// OMP_WAIT_POLICY=passive and OPENBLAS_THREAD_TIMEOUT=16 added. Values the
/// user set (or GOMP_SPINCOUNT) are kept. The dynamic loader then binds
/// libtorch's libraries a second time (0.27 s on a 2-core VM): a program that
/// only starts other processes should set the variables for them instead.
/// Linking paratorch alone never re-executes a program; the `paratorch`
/// command opts in for its processes that compute.
void start_with_napping_compute_threads(int argc, char** argv, char** envp);

}  // namespace paratorch

/// See paratorch::start_with_napping_compute_threads. An ELF .preinit_array
/// entry: it runs before every shared library's constructors.
#define PARATORCH_NAP_IDLE_COMPUTE_THREADS()                                                       \
  __attribute__((section(".preinit_array"), used)) static void (*const paratorch_nap_idle_threads_)( \
      int, char**, char**) = &::paratorch::start_with_napping_compute_threads
