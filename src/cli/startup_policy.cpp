// src/cli/startup_policy.cpp — see startup_policy.h.
#include "cli/startup_policy.h"

#include "cli/launcher.h"

#include <paratorch/world.h>

#include <cstring>

namespace paratorch::cli {
namespace {

bool is(const char* a, const char* b) { return std::strcmp(a, b) == 0; }
bool starts_with(const char* s, const char* prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

}  // namespace

bool computes_in_this_process(int argc, char** argv, char** envp) {
  if (argc < 2) return false;
  const char* command = argv[1];
  if (!is(command, "train") && !is(command, "verify") && !is(command, "plan")) return false;
  bool calibrate = false, nproc = false;
  for (int i = 2; i < argc; ++i) {
    if (is(argv[i], "--help") || is(argv[i], "-h")) return false;
    calibrate = calibrate || is(argv[i], "--calibrate");
    nproc = nproc || is(argv[i], "--nproc") || starts_with(argv[i], "--nproc=");
  }
  if (is(command, "plan") && !calibrate) return false;
  return !nproc || under_mpi_launcher(envp);
}

void nap_idle_threads_where_computing(int argc, char** argv, char** envp) {
  if (computes_in_this_process(argc, argv, envp)) start_with_napping_compute_threads(argc, argv, envp);
}

}  // namespace paratorch::cli
