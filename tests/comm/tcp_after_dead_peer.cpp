// tests/comm/tcp_after_dead_peer.cpp — point-to-point latency over TCP
// between two live ranks after a third has died and rank 0 tried to reach it.
// Run with 3 ranks over TCP only, and a launcher that outlives the dead rank:
//   OMPI_MCA_orte_abort_on_non_zero_status=0 mpirun -np 3 --mca btl tcp,self tcp_after_dead_peer
//
// Open MPI's TCP transport is read by its event loop, ticked on every
// progress call only while Open MPI counts a connected peer; Open MPI 4.1
// can take more off that count when a peer dies than its connection added.
// Rank 0 then counts zero connected peers while it still talks to rank 1,
// and each message waits for the slow tick (mpi_event_tick_rate, 10 ms by
// default). World sets a 100 us tick (world.cpp); this probe prints the
// median round trip rank 0 <-> rank 1 once rank 2 is gone (and rank 0 has
// tried to send to it, as a parameter server answering a dead worker does),
// and says SLOW when it is over 2 ms.
#include <paratorch/world.h>

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Polls like the parameter server does (ps_protocol.cpp): a short spin, then
// sleeps of up to 200 us, each poll one MPI progress call.
bool wait(MPI_Request* request, double limit_s) {
  const double deadline = now_s() + limit_s;
  int done = 0;
  for (int polls = 0;; ++polls) {
    MPI_Test(request, &done, MPI_STATUS_IGNORE);
    if (done) return true;
    if (now_s() > deadline) return false;
    if (polls >= 200) std::this_thread::sleep_for(std::chrono::microseconds(std::min(200, 10 * (polls - 199))));
  }
}

bool exchange(int peer, bool first, int* value) {
  MPI_Request r;
  if (first) {
    MPI_Isend(value, 1, MPI_INT, peer, 7, MPI_COMM_WORLD, &r);
    if (!wait(&r, 5)) return false;
    MPI_Irecv(value, 1, MPI_INT, peer, 7, MPI_COMM_WORLD, &r);
    return wait(&r, 5);
  }
  MPI_Irecv(value, 1, MPI_INT, peer, 7, MPI_COMM_WORLD, &r);
  if (!wait(&r, 5)) return false;
  MPI_Isend(value, 1, MPI_INT, peer, 7, MPI_COMM_WORLD, &r);
  return wait(&r, 5);
}

}  // namespace

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  if (world.size() != 3) {
    std::fprintf(stderr, "tcp_after_dead_peer: run with 3 ranks, got %d\n", world.size());
    return 2;
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  const int rank = world.rank();
  int value = 0;
  // Connect 0-1 and 0-2.
  if (rank != 1 && !exchange(rank == 0 ? 2 : 0, rank == 0, &value)) return 1;
  if (rank != 2 && !exchange(rank == 0 ? 1 : 0, rank == 0, &value)) return 1;
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 2) std::_Exit(3);
  if (rank == 0) {
    // After rank 2's socket has closed, a send to it (the slowdown comes
    // without it too; a server does send to workers it has not yet found dead).
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    MPI_Request r;
    MPI_Isend(&value, 1, MPI_INT, 2, 9, MPI_COMM_WORLD, &r);
    wait(&r, 0.5);  // never completes; it only has to be tried
  }
  std::vector<double> trips;
  for (int i = 0; i < 200; ++i) {
    const double t0 = now_s();
    if (!exchange(rank == 0 ? 1 : 0, rank == 0, &value)) {
      std::printf("rank %d: no answer from its live peer within 5 s\n", rank);
      return 1;
    }
    trips.push_back(now_s() - t0);
  }
  std::sort(trips.begin(), trips.end());
  const double median_ms = trips[trips.size() / 2] * 1e3;
  if (rank == 0)
    std::printf("tcp_after_dead_peer: median round trip %.3f ms over %zu: %s\n", median_ms, trips.size(),
                median_ms > 2.0 ? "SLOW" : "ok");
  std::fflush(stdout);
  std::_Exit(0);  // MPI_Finalize would wait for the dead rank
}
