// src/cli/inspect_command.cpp — `paratorch inspect DIR`: why a job hung, from
// the flight records its ranks wrote (report/flight_report.h).
//
//   paratorch inspect runs/a/flight
// prints one line per rank (what it waits in), who is behind on which group,
// whom the waiting ranks wait for, and last the line scripts read:
//   inspect: waiting=0,2 blocking=1 missing=1 deadlock=no
#include "cli/commands.h"
#include "report/flight_report.h"

#include <paratorch/errors.h>

#include <cstdio>
#include <iostream>

namespace paratorch::cli {

int run_inspect(const std::vector<std::string>& args) {
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << "usage: paratorch inspect DIR\n\n"
                 "Reads the flight records (rank-K.json) that the ranks of a job wrote into DIR\n"
                 "(a run's out_dir/flight, or PARATORCH_FLIGHT_DIR) when a deadline passed, on\n"
                 "SIGUSR1, or on a fatal error, and says what each rank waits in, which ranks\n"
                 "are behind on which group, and which rank the others wait for. The last line:\n"
                 "  inspect: waiting=RANKS blocking=RANKS missing=RANKS deadlock=yes|no\n"
                 "Reference: docs/faults.md\n";
    return 0;
  }
  if (args.size() != 1 || args[0].rfind("--", 0) == 0)
    throw UsageError("paratorch inspect: give one folder of flight records, e.g. 'paratorch inspect runs/a/flight' "
                     "(see --help)");
  const auto records = report::read_flight_records(args[0]);
  const report::FlightDiagnosis d = report::diagnose_flight(records);
  for (const std::string& line : d.lines) std::printf("%s\n", line.c_str());
  std::printf("%s\n", d.summary().c_str());
  return 0;
}

}  // namespace paratorch::cli
