// src/comm/world.cpp — MPI start-up, node-local facts, thread budget, device,
// and the malloc settings every rank starts with (idle-thread policies are a
// program's opt-in: startup_env.cpp).
#include <paratorch/errors.h>
#include <paratorch/world.h>

#include "comm/flight_recorder.h"
#include "comm/host_table.h"
#include "comm/mpi_communicator.h"
#include "comm/peer_probe.h"
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

/// Every rank's host name, by world rank (one fixed-size all-gather).
std::vector<std::string> gather_host_names() {
  constexpr int kLength = 64;
  char mine[kLength] = {0};
  std::strncpy(mine, comm::this_host().c_str(), kLength - 1);
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<char> all(static_cast<size_t>(size) * kLength);
  MPI_Allgather(mine, kLength, MPI_CHAR, all.data(), kLength, MPI_CHAR, MPI_COMM_WORLD);
  std::vector<std::string> hosts;
  for (int r = 0; r < size; ++r) hosts.emplace_back(all.data() + static_cast<size_t>(r) * kLength);
  return hosts;
}

/// The flight recorder's folder and identity; SIGUSR1 dumps when asked.
void start_flight_recorder(const FlightRecorderOptions& options, int rank, int size) {
  std::string dir = options.dump_dir;
  if (const char* env = std::getenv("PARATORCH_FLIGHT_DIR"); dir.empty() && env && *env) dir = env;
  comm::FlightRecorder::instance().configure(options.capacity, dir);
  comm::FlightRecorder::instance().set_identity(rank, size, comm::host_of(rank));
  comm::start_dump_on_signal(options.dump_on_sigusr1,
                             options.report_on_sigterm ? std::function<void()>(comm::report_termination) : nullptr);
}

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}

// Open MPI's TCP transport is read by its event loop, which a progress call
// ticks every time while Open MPI counts a user of it (a connected TCP peer)
// and otherwise once per mpi_event_tick_rate (10 ms by default). Open MPI 4.1
// miscounts when a peer dies: closing the dead peer's connection can take
// more off the count than the connection added, so a survivor's count can
// reach zero while it still talks to live peers over TCP, and every message
// then waits for the next tick. Seen with a debugger on
// opal_progress_event_users_increment/decrement in a parameter server that
// lost a host's two workers: three connections added, three closes taken off
// for the two dead peers, the live worker's connection still open; that
// worker fell from ~490 to ~40 steps/s. A plain MPI program shows it too:
// 3 ranks over TCP, rank 2 exits, and ranks 0 and 1 then take ~8 ms a round
// trip. tests/comm/tcp_after_dead_peer.cpp measures 10.6-11.2 ms in that
// state, 0.11 ms with a 100 us tick, which costs one poll() per 100 us of
// waiting when no TCP peer is connected. The user's own setting wins: Open
// MPI reads OMPI_MCA_* from the environment in MPI_Init.
void keep_tcp_progress_ticking() { setenv("OMPI_MCA_mpi_event_tick_rate", "100", /*overwrite=*/0); }

}  // namespace

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
    throw UsageError("paratorch: WorldOptions::threads_per_rank must be >= 0 (0 = automatic), got " +
                     std::to_string(threads_per_rank));
  comm.validate();
  flight.validate();
}

World::World(int& argc, char**& argv, WorldOptions options) : options_(options) {
  options_.comm.debug_checks = options_.comm.debug_checks || env_flag("PARATORCH_DEBUG");
  if (const char* shm = std::getenv("PARATORCH_SHM"); shm && std::string(shm) == "0")
    options_.comm.shm_collectives = false;
  options_.validate();
  if (options_.tune_malloc) keep_large_blocks_in_heap();

  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = MPI_THREAD_SINGLE;
  if (!initialized) {
    keep_tcp_progress_ticking();
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
  comm::set_world_hosts(gather_host_names());
  start_flight_recorder(options_.flight, rank_, size_);

  threads_ = options_.threads_per_rank > 0 ? options_.threads_per_rank
                                           : std::max(1, available_cores() / local_size_);
  set_compute_threads(threads_);

  if (torch::cuda::is_available()) {
    int count = static_cast<int>(torch::cuda::device_count());
    device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank_ % count));
  }

  // Answers other ranks asking, after a deadline, how far this rank got.
  comm::PeerProbe::instance().start();
  MPI_Comm world_dup;
  MPI_Comm_dup(MPI_COMM_WORLD, &world_dup);
  comm_ = std::make_shared<comm::MpiCommunicator>(world_dup, "world", options_.comm);
}

World::~World() {
  comm_.reset();
  comm::Watchdog::instance().shutdown();
  comm::PeerProbe::instance().stop();
  comm::stop_dump_on_signal();
  // A job launched to survive lost ranks (cli/survivable_launch.h sets
  // PARATORCH_EXIT_DIR; mpirun --enable-recovery) skips MPI_Finalize: it is
  // collective over every rank, the dead ones included, and Open MPI 4.1's
  // PMIx fence then waits forever (seen: survivors of a killed worker stuck in
  // ompi_mpi_finalize after writing their results). By now every message of
  // the run has completed, and the job's status comes from the codes each
  // rank records, not from mpirun.
  if (std::getenv("PARATORCH_EXIT_DIR")) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owns_mpi_ && !finalized) MPI_Finalize();
}

}  // namespace paratorch
