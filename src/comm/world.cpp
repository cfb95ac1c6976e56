// src/comm/world.cpp — MPI start-up, node-local facts, thread budget, device,
// and the process settings every rank starts with (OpenMP wait policy, malloc).
#include <paratorch/errors.h>
#include <paratorch/world.h>

#include "comm/mpi_communicator.h"
#include "comm/watchdog.h"

#include <dlfcn.h>
#include <malloc.h>
#include <mpi.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace paratorch {
namespace {

const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
  }
  return "unknown";
}

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

// OpenMP workers that sleep when idle instead of spinning. libtorch's
// intra-op pool (libgomp) and OpenBLAS's own pthread pool take turns on the
// same cores: an elementwise op, then a GEMM, then another elementwise op.
// By default a libgomp worker spins for ~300k iterations after each parallel
// region, holding the core that OpenBLAS's worker needs for the next GEMM.
// Measured on bench/train (gpt, 2 cores, quiet machine): 755 ms/step
// spinning, 397 ms passive, 542 ms with one thread.
//
// libgomp reads OMP_WAIT_POLICY once, in its constructor, and offers no call
// to change it later. The only code that runs before that constructor is the
// executable's .preinit_array, and there glibc has not set up `environ` yet
// (libc's own initializer overwrites it afterwards), so setenv() would be
// lost. So when neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set, the
// process re-executes itself once, at this earliest point (before any
// constructor or main has run), with OMP_WAIT_POLICY=passive added; the
// dynamic loader's part of that costs ~20 ms. Set either variable to opt out.
// world.cpp is linked into every program that uses World.
char g_start_wait_policy[32];  // plain storage: no constructor has run yet

bool starts_with(const char* s, const char* prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

void start_with_passive_openmp_waits(int /*argc*/, char** argv, char** envp) {
  static char* env[4096];
  static char passive[] = "OMP_WAIT_POLICY=passive";
  size_t n = 0;
  for (; envp && envp[n]; ++n) {
    if (starts_with(envp[n], "OMP_WAIT_POLICY=")) {
      std::snprintf(g_start_wait_policy, sizeof(g_start_wait_policy), "%s", envp[n] + 16);
      return;
    }
    if (starts_with(envp[n], "GOMP_SPINCOUNT=")) return;  // the user tuned libgomp directly
    if (n + 2 >= sizeof(env) / sizeof(env[0])) return;
    env[n] = envp[n];
  }
  env[n] = passive;
  env[n + 1] = nullptr;
  execve("/proc/self/exe", argv, env);  // returns only on failure: keep the default policy
}
__attribute__((section(".preinit_array"), used)) void (*const kPreinitOpenmpWaits)(int, char**, char**) =
    &start_with_passive_openmp_waits;

}  // namespace

const char* openmp_wait_policy() { return g_start_wait_policy[0] ? g_start_wait_policy : "default"; }

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

void set_compute_threads(int threads) {
  torch::set_num_threads(threads);
  // OpenBLAS keeps its own pool beside torch's OpenMP threads. Looked up at
  // run time: the BLAS behind libtorch is chosen by Debian's alternatives.
  using SetThreads = void (*)(int);
  if (auto fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads")))
    fn(threads);
}

void keep_large_blocks_in_heap() {
  // Blocks up to 1 GiB come from the heap and stay there when freed (see
  // WorldOptions::tune_malloc). Setting these also turns off glibc's dynamic
  // threshold, which otherwise oscillates and makes step times bimodal.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_ARENA_MAX, 1);
}

void WorldOptions::validate() const {
  if (threads_per_rank < 0)
    throw UsageError("paratorch: [train] threads_per_rank must be >= 0 (0 = automatic), got " +
                     std::to_string(threads_per_rank));
  comm.validate();
}

World::World(int& argc, char**& argv, WorldOptions options) : options_(options) {
  options_.comm.debug_checks = options_.comm.debug_checks || env_flag("PARATORCH_DEBUG");
  options_.validate();
  if (options_.tune_malloc) keep_large_blocks_in_heap();

  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = MPI_THREAD_SINGLE;
  if (!initialized) {
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    owns_mpi_ = true;
  } else {
    MPI_Query_thread(&provided);
  }
  thread_level_ = thread_level_name(provided);
  // Collectives run on per-communicator threads while the caller may start
  // point-to-point transfers: MPI must accept calls from several threads.
  if (provided < MPI_THREAD_MULTIPLE)
    throw RuntimeFailure("paratorch: needs MPI_THREAD_MULTIPLE but this MPI provides " +
                         thread_level_ + "; use an MPI built with thread support (OpenMPI 4 is)");

  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &local_rank_);
  MPI_Comm_size(local, &local_size_);
  MPI_Comm_free(&local);

  threads_ = options_.threads_per_rank > 0 ? options_.threads_per_rank
                                           : std::max(1, available_cores() / local_size_);
  set_compute_threads(threads_);

  if (torch::cuda::is_available()) {
    int count = static_cast<int>(torch::cuda::device_count());
    device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank_ % count));
  }

  MPI_Comm world_dup;
  MPI_Comm_dup(MPI_COMM_WORLD, &world_dup);
  comm_ = std::make_shared<comm::MpiCommunicator>(world_dup, "world", options_.comm);
}

World::~World() {
  comm_.reset();
  comm::Watchdog::instance().shutdown();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_mpi_ && !finalized) MPI_Finalize();
}

}  // namespace paratorch
