// src/report/flight_report.h — reading the ranks' flight records and saying
// why a job hangs (`paratorch inspect DIR`).
//
// Each rank's record (comm/flight_recorder.h) lists its last operations with
// their state. Put side by side they answer the questions of a hung job:
//   - what each rank waits in: its oldest operation not finished;
//   - who is behind: on each group, the members whose last collective there
//     is older than the one the others wait in (collectives of one group are
//     numbered alike on every member);
//   - whom the others wait for: a rank waiting in collective #n of a group
//     waits for each member that has not entered #n (or wrote no record); a
//     rank waiting in a send/recv waits for its peer. Following these edges
//     to ranks that wait for nobody (or wrote nothing) names the blocking
//     ranks; edges that only loop back say the ranks deadlock on each other.
// Torch-free: the tests feed it hand-written records.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace paratorch::report {

struct FlightOp {
  uint64_t id = 0;
  std::string op;
  int64_t seq = 0;
  std::string group;
  std::string group_key;
  std::vector<int> group_ranks;  // world ranks, by group rank
  int group_rank = 0;
  int peer = -1;  // group rank of a send/recv's peer
  std::string dtype;
  std::vector<int64_t> shape;
  int64_t bytes = 0;
  std::string state;  // queued, started, done, failed
  int64_t queued_us = 0, started_us = 0, done_us = 0;

  bool is_p2p() const { return op == "send" || op == "recv"; }
  bool finished() const { return state == "done" || state == "failed"; }
  /// "all_reduce #1 on group 'world'"; a transfer also names its peer.
  std::string label() const;
};

struct FlightRecord {
  std::string file;
  int rank = 0;
  int world_size = 1;
  std::string host;
  std::string reason;
  int64_t dumped_us = 0;
  uint64_t recorded = 0;  // operations recorded in all; more than ops.size() once the ring wrapped
  uint64_t capacity = 0;
  std::vector<FlightOp> ops;  // oldest first
};

/// Parses one rank-K.json; throws UsageError naming `file` and the problem.
FlightRecord parse_flight_record(const std::string& text, const std::string& file);

/// Every rank-*.json in `dir`, by rank. Throws UsageError when the folder is
/// missing, holds no record, or holds two records of one rank.
std::vector<FlightRecord> read_flight_records(const std::string& dir);

struct FlightDiagnosis {
  std::vector<std::string> lines;  // for people, in order
  std::vector<int> waiting;        // ranks waiting in an operation
  std::vector<int> blocking;       // ranks the waiting ones wait for, at the end of the chain
  std::vector<int> missing;        // ranks of the world that wrote no record
  bool deadlock = false;           // every waited-for rank waits itself, in a cycle
  /// "inspect: records=2/3 waiting=0,2 blocking=1 missing=1 deadlock=no"
  std::string summary() const;
};

FlightDiagnosis diagnose_flight(const std::vector<FlightRecord>& records);

}  // namespace paratorch::report
