// tests/comm/fault_probe.cpp — a 2- or 3-rank program that misbehaves on purpose.
//   fault_probe skip TIMEOUT      rank 1 stays alive but skips the second all_reduce (silent)
//   fault_probe mismatch TIMEOUT  ranks pass different shapes (run with PARATORCH_DEBUG=1)
//   fault_probe die TIMEOUT       rank 1 exits abruptly before the second all_reduce (dead)
//   fault_probe stop TIMEOUT      rank 1 stops itself (SIGSTOP) before the second all_reduce,
//                                 ignoring SIGTERM (the launcher continues it before SIGKILL)
//   fault_probe usr1 TIMEOUT      every rank signals itself SIGUSR1 after the first all_reduce,
//                                 waits for its flight record to appear, and exits 0
// The tests around it check the job ends fast, non-zero, with a message that
// names the op and the rank to blame.
#include <paratorch/world.h>

#include <csignal>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

// SIGUSR1 must make this rank write PARATORCH_FLIGHT_DIR/rank-K.json.
int wait_for_own_record(int rank) {
  const char* dir = std::getenv("PARATORCH_FLIGHT_DIR");
  if (!dir) {
    std::fprintf(stderr, "usr1 needs PARATORCH_FLIGHT_DIR\n");
    return 2;
  }
  const std::string path = std::string(dir) + "/rank-" + std::to_string(rank) + ".json";
  std::raise(SIGUSR1);
  for (int i = 0; i < 100 && !std::filesystem::exists(path); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const bool written = std::filesystem::exists(path);
  std::printf("rank %d: %s %s\n", rank, written ? "flight record written to" : "no flight record at", path.c_str());
  return written ? 0 : 1;
}

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "skip";
  paratorch::WorldOptions options;
  options.comm.timeout_s = argc > 2 ? std::atof(argv[2]) : 2.0;
  try {
    paratorch::World world(argc, argv, options);
    auto comm = world.comm();
    auto t = torch::ones({world.rank() == 1 && mode == "mismatch" ? 4 : 8});
    if (mode != "mismatch") comm->all_reduce(t);  // #0 succeeds on every rank
    if (mode == "usr1") return wait_for_own_record(world.rank());
    if (world.rank() == 1) {
      if (mode == "skip") std::this_thread::sleep_for(std::chrono::seconds(60));
      if (mode == "die") std::_Exit(3);
      if (mode == "stop") {
        // Open MPI ends the job with SIGCONT, SIGTERM, then SIGKILL a second
        // later. Ignoring SIGTERM gives this rank that second, once
        // continued, to act on the questions it got while stopped, so the
        // test sees whether it writes a record of its later state.
        std::signal(SIGTERM, SIG_IGN);
        std::raise(SIGSTOP);
      }
    }
    comm->all_reduce(t);  // skip: #1 never matched; mismatch: #0 disagrees
    std::printf("rank %d: unexpectedly completed\n", world.rank());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
