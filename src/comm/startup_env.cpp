// src/comm/startup_env.cpp — the idle-thread policies a program may start
// with (world.h, PARATORCH_NAP_IDLE_COMPUTE_THREADS): the environment defaults,
// the one re-execution that applies them before any library reads them, and
// their export to the processes a launcher starts (startup_env.h).
#include "comm/startup_env.h"

#include <paratorch/world.h>

#include <unistd.h>

#include <cstdlib>  // setenv
#include <cstring>
#include <string>

namespace paratorch {
namespace {

// Idle compute threads that sleep soon. libtorch's intra-op pool (libgomp)
// and OpenBLAS's own pthread pool take turns on the same cores: an
// elementwise op, then a GEMM, then another elementwise op. By default an
// idle libgomp worker spins ~300k iterations after each parallel region, and
// an idle OpenBLAS worker spins (yielding) for 2^28 cycles after each GEMM;
// either holds a core the other pool needs next. Measured on bench/train
// (gpt, 2 cores, quiet machine): 755 ms/step with both defaults, 375 ms with
// passive OpenMP waits, 330 ms adding a 2^16-cycle OpenBLAS timeout.
struct StartupDefault {
  const char* assignment;  // added to the environment unless...
  const char* set_by[2];   // ...one of these is already set (the user's choice wins)
};
constexpr StartupDefault kStartupDefaults[] = {
    {"OMP_WAIT_POLICY=passive", {"OMP_WAIT_POLICY=", "GOMP_SPINCOUNT="}},
    {"OPENBLAS_THREAD_TIMEOUT=16", {"OPENBLAS_THREAD_TIMEOUT=", nullptr}},
};
constexpr size_t kNumStartupDefaults = sizeof(kStartupDefaults) / sizeof(kStartupDefaults[0]);

bool starts_with(const char* s, const char* prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

/// Whether `envp` already holds default d or a variable that overrides it.
/// Allocates nothing: it also runs from .preinit_array.
bool present_in(const StartupDefault& d, char** envp) {
  for (size_t i = 0; envp && envp[i]; ++i)
    for (const char* prefix : d.set_by)
      if (prefix && starts_with(envp[i], prefix)) return true;
  return false;
}

}  // namespace

// Both libraries read these variables once, in their constructors, and offer
// no call to change them later. The only code that runs before those
// constructors is the executable's .preinit_array, and there glibc has not
// set up `environ` yet (libc's own initializer overwrites it afterwards), so
// setenv() would be lost. So when a default is missing, the process
// re-executes itself once, at this earliest point (before any constructor or
// main has run), with the missing ones added. By then the dynamic loader has
// already bound libtorch's ~290 libraries once, and binds them again after
// the exec: 0.27 s of a 0.97 s start on a 2-core EPYC VM (a program linking
// libtorch_cpu, libc10 and MPI started in 0.72 s). Only programs that ask run
// this: a library must not restart the program that links it.
void start_with_napping_compute_threads(int /*argc*/, char** argv, char** envp) {
  static char* env[4096];
  size_t n = 0;
  for (; envp && envp[n]; ++n) {
    if (n + kNumStartupDefaults + 1 >= sizeof(env) / sizeof(env[0])) return;
    env[n] = envp[n];
  }
  size_t added = 0;
  for (const auto& d : kStartupDefaults)
    if (!present_in(d, envp)) env[n + added++] = const_cast<char*>(d.assignment);
  if (added == 0) return;
  env[n + added] = nullptr;
  // The executable's own path rather than /proc/self/exe, which would rename
  // the process (its comm, what top and ps show) to "exe".
  static char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len <= 0 || static_cast<size_t>(len) >= sizeof(self) - 1) return;
  self[len] = '\0';
  execve(self, argv, env);  // returns only on failure: run with the libraries' defaults
}

void export_napping_defaults() {
  for (const auto& d : kStartupDefaults) {
    if (present_in(d, environ)) continue;
    const char* eq = std::strchr(d.assignment, '=');
    setenv(std::string(d.assignment, eq).c_str(), eq + 1, /*overwrite=*/0);
  }
}

}  // namespace paratorch
