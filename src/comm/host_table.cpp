// src/comm/host_table.cpp — see host_table.h.
#include "comm/host_table.h"

#include <unistd.h>

#include <mutex>

namespace paratorch::comm {
namespace {

std::mutex table_mutex;
std::vector<std::string> table;

}  // namespace

void set_world_hosts(std::vector<std::string> hosts) {
  std::lock_guard<std::mutex> lock(table_mutex);
  table = std::move(hosts);
}

std::string host_of(int world_rank) {
  std::lock_guard<std::mutex> lock(table_mutex);
  if (world_rank < 0 || static_cast<size_t>(world_rank) >= table.size()) return "";
  return table[static_cast<size_t>(world_rank)];
}

std::string describe_world_rank(int world_rank) {
  const std::string host = host_of(world_rank);
  const std::string who = "world rank " + std::to_string(world_rank);
  return host.empty() ? who : who + " (host " + host + ")";
}

std::string this_host() {
  char name[256] = {0};
  if (gethostname(name, sizeof name - 1) != 0) return "unknown";
  return name;
}

}  // namespace paratorch::comm
