// src/parallel/async/ps_trace.h — trace.json for parameter-server runs.
//
// The synchronous trainer gathers every rank's spans with a collective
// (report::write_trace); an asynchronous job must finish without its lost
// workers, so here each rank sends its spans to rank 0 point-to-point and
// rank 0 waits for each at most [comm] timeout_s, leaving out a rank whose
// spans never come. Same file, same spans as in sync mode (ps_pull,
// ps_push, forward_backward on workers; ps_reply, ps_apply on servers),
// covering what each rank traced (the runner decides how many steps).
#pragma once
#include <paratorch/communicator.h>

#include <string>
#include <vector>

namespace paratorch::async {

/// Sends this rank's spans to rank 0; gives up after `timeout_s` (rank 0 gone).
void send_trace(Communicator& world, double timeout_s);

/// Rank 0: its own spans and those `ranks` send, written to `path`.
void write_ps_trace(Communicator& world, const std::vector<int>& ranks, double timeout_s, const std::string& path);

}  // namespace paratorch::async
