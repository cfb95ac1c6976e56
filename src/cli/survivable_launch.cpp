// src/cli/survivable_launch.cpp — see survivable_launch.h.
#include "cli/survivable_launch.h"

#include <paratorch/errors.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace paratorch::cli {
namespace {

pid_t g_mpirun = -1;

// Ctrl-C reaches mpirun through the terminal's process group; a signal sent
// to this launcher alone (ctest's timeout, kill PID) is passed on, so mpirun
// never outlives it.
void forward_signal(int sig) {
  if (g_mpirun > 0) kill(g_mpirun, sig);
}

std::string make_exit_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "paratorch-exit-XXXXXX").string();
  if (!mkdtemp(pattern.data()))
    throw RuntimeFailure(std::string("paratorch: cannot create a temporary folder for the ranks' exit codes (") +
                         std::strerror(errno) + ")");
  return pattern;
}

// Exit code rank `r` recorded, or -1 when it left none.
int recorded_code(const std::string& dir, int r) {
  std::ifstream in(dir + "/rank-" + std::to_string(r));
  int code = -1;
  return in >> code ? code : -1;
}

}  // namespace

int run_survivable_job(const std::vector<std::string>& mpirun_cmd, int required_ranks) {
  const std::string dir = make_exit_dir();
  setenv("PARATORCH_EXIT_DIR", dir.c_str(), 1);
  std::fflush(stdout);
  std::fflush(stderr);
  g_mpirun = fork();
  if (g_mpirun < 0) throw RuntimeFailure(std::string("paratorch: fork failed (") + std::strerror(errno) + ")");
  if (g_mpirun == 0) {
    std::vector<char*> argv;
    for (const auto& s : mpirun_cmd) argv.push_back(const_cast<char*>(s.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "paratorch: could not start mpirun (%s); install OpenMPI (apt-get install openmpi-bin)\n",
                 std::strerror(errno));
    _exit(1);
  }
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, forward_signal);
  int status = 0;
  while (waitpid(g_mpirun, &status, 0) < 0 && errno == EINTR) {
  }
  const int mpirun_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  int code = 0;
  for (int r = 0; r < required_ranks; ++r) {
    const int c = recorded_code(dir, r);
    if (c < 0)
      std::fprintf(stderr, "paratorch: rank %d (a parameter server, required) ended without an exit status: it "
                           "was killed, crashed or was ended by a deadline; the job failed\n", r);
    code = std::max(code, c < 0 ? 1 : c);
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return std::max(code, mpirun_code);
}

void record_exit_status(int code) {
  const char* dir = std::getenv("PARATORCH_EXIT_DIR");
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  if (!dir || !rank) return;
  std::ofstream(std::string(dir) + "/rank-" + rank) << code << "\n";
}

}  // namespace paratorch::cli
