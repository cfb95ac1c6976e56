// paratorch/flight_recorder.h — what each rank last did, kept for the day a
// job hangs.
//
// Every rank keeps its last `capacity` collectives and point-to-point
// transfers in a ring buffer: sequence number, group, op, sizes, dtype, state
// (queued, started, done, failed) and timestamps. The record is written to
// `dump_dir/rank-K.json` when a deadline passes (on the rank that waited, and
// on every peer it asks where it is), on SIGUSR1, and when the program calls
// dump_flight_record() (the `paratorch` command does on a fatal error).
// `paratorch inspect DIR` reads the records of all ranks and says which ranks
// are behind, on which operation, and which rank the others wait for
// (docs/faults.md).
//
// Example:
///   paratorch::WorldOptions options;
///   options.flight.dump_dir = "runs/a/flight";   // or PARATORCH_FLIGHT_DIR
///   paratorch::World world(argc, argv, options);
///   try { train(world); } catch (const std::exception& e) {
///     paratorch::dump_flight_record(e.what());     // rank-K.json, then exit
///     throw;
///   }
#pragma once
#include <string>

namespace paratorch {

struct FlightRecorderOptions {
  /// Operations kept per rank; the oldest are overwritten. 0 records nothing.
  int capacity = 2000;
  /// Folder the records are written to (created when first needed). Empty:
  /// records are kept but never written. PARATORCH_FLIGHT_DIR, when set,
  /// takes the place of an empty one.
  std::string dump_dir;
  /// Write the record when the process receives SIGUSR1 (`kill -USR1 PID`
  /// on a job that seems stuck). The handler only wakes a thread that writes.
  bool dump_on_sigusr1 = true;
  /// On SIGTERM (how a launcher ends the survivors when a rank or a host
  /// dies), write the record, ask the peers of the operation this rank waits
  /// in who is gone (0.5 s at most: Open MPI sends SIGKILL a second after
  /// SIGTERM), print one line naming the operation, its group and the dead
  /// or silent peers with their hosts, then end as SIGTERM would. Off by
  /// default: a library does not take a program's SIGTERM unasked; the
  /// `paratorch` command turns it on.
  bool report_on_sigterm = false;
  /// Throws UsageError when a value is out of range.
  void validate() const;
};

/// Writes this rank's record to dump_dir/rank-K.json, with `reason` in it.
/// Returns the path written, or "" when there is no dump_dir or the write
/// failed (a dump never throws: it runs on the way out of a failure).
std::string dump_flight_record(const std::string& reason);

}  // namespace paratorch
