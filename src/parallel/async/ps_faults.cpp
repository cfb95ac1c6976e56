// src/parallel/async/ps_faults.cpp — see ps_faults.h.
#include "parallel/async/ps_faults.h"

#include <paratorch/errors.h>

#include <cstdlib>
#include <string>

namespace paratorch::async {
namespace {

// "RANK:VALUE" from the environment; UsageError when malformed.
bool read_pair(const char* name, int* rank, double* value) {
  const char* text = std::getenv(name);
  if (!text || !*text) return false;
  char* end = nullptr;
  *rank = static_cast<int>(std::strtol(text, &end, 10));
  if (*end != ':') throw UsageError(std::string("paratorch: ") + name + "=" + text + " must be RANK:VALUE");
  *value = std::strtod(end + 1, &end);
  if (*end) throw UsageError(std::string("paratorch: ") + name + "=" + text + " must be RANK:VALUE");
  return true;
}

}  // namespace

Injection read_injection() {
  Injection inj;
  read_pair("PARATORCH_PS_STRAGGLER", &inj.straggler_rank, &inj.factor);
  double step = -1;
  if (read_pair("PARATORCH_PS_KILL", &inj.kill_rank, &step)) inj.kill_step = static_cast<int64_t>(step);
  if (read_pair("PARATORCH_PS_CRASH", &inj.crash_rank, &step)) inj.crash_step = static_cast<int64_t>(step);
  return inj;
}

}  // namespace paratorch::async
