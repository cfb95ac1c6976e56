// tests/comm/world_env_probe.cpp — prints the idle-thread variables as main
// sees them. Built twice: as is (a program that only links paratorch: its
// environment must be the one it was started with) and with
// PROBE_OPTS_IN (PARATORCH_NAP_IDLE_COMPUTE_THREADS, world.h).
#include <paratorch/world.h>

#include <cstdio>
#include <cstdlib>

#ifdef PROBE_OPTS_IN
PARATORCH_NAP_IDLE_COMPUTE_THREADS();
#endif

int main() {
  std::printf("cores=%d\n", paratorch::available_cores());  // links world.cpp
  for (const char* name : {"OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT"}) {
    const char* value = std::getenv(name);
    std::printf("%s=%s\n", name, value ? value : "(unset)");
  }
  return 0;
}
