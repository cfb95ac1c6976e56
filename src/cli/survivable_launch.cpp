// src/cli/survivable_launch.cpp — see survivable_launch.h. Owns the exit
// codes ranks record and the job's code computed from the required ones.
#include "cli/survivable_launch.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>

namespace paratorch::cli {
namespace {

// Exit code rank `r` recorded, or -1 when it left none.
int recorded_code(const std::string& dir, int r) {
  std::ifstream in(dir + "/rank-" + std::to_string(r));
  int code = -1;
  return in >> code ? code : -1;
}

}  // namespace

int required_ranks_code(const std::string& dir, int required_ranks) {
  int code = 0;
  for (int r = 0; r < required_ranks; ++r) {
    const int c = recorded_code(dir, r);
    if (c < 0)
      std::fprintf(stderr, "paratorch: rank %d (a parameter server, required) ended without an exit status: it "
                           "was killed, crashed or was ended by a deadline; the job failed\n", r);
    code = std::max(code, c < 0 ? 1 : c);
  }
  return code;
}

void record_exit_status(int code) {
  const char* dir = std::getenv(kExitDirVar);
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  if (!dir || !rank) return;
  std::ofstream(std::string(dir) + "/rank-" + rank) << code << "\n";
}

}  // namespace paratorch::cli
