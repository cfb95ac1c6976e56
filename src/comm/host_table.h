// src/comm/host_table.h — which host each world rank runs on, for messages.
//
// World gathers every rank's host name once at start-up; a deadline report
// or a flight record then names "world rank 3 (host h1)", which is what an
// operator needs to find the machine that died.
#pragma once
#include <string>
#include <vector>

namespace paratorch::comm {

/// Sets the table (index: world rank).
void set_world_hosts(std::vector<std::string> hosts);
/// The host of `world_rank`; "" before World gathered them or out of range.
std::string host_of(int world_rank);
/// "world rank 3 (host h1)", or "world rank 3" when the host is unknown.
std::string describe_world_rank(int world_rank);
/// This machine's host name (gethostname).
std::string this_host();

}  // namespace paratorch::comm
