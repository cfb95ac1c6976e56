// src/layout/placement.cpp — see placement.h.
#include "layout/placement.h"

#include <map>
#include <set>

namespace paratorch {

std::vector<std::vector<int>> tp_groups_across_hosts(const Layout& layout, const std::vector<std::string>& hosts) {
  std::map<std::pair<int, int>, std::vector<int>> groups;  // (dp, pp) -> members
  for (int r = 0; r < static_cast<int>(hosts.size()); ++r) {
    const Coords c = layout.coords_of(r);
    groups[{c.dp, c.pp}].push_back(r);
  }
  std::vector<std::vector<int>> across;
  for (const auto& [key, members] : groups) {
    std::set<std::string> where;
    for (int r : members) where.insert(hosts[static_cast<size_t>(r)]);
    if (where.size() > 1) across.push_back(members);
  }
  return across;
}

std::string tp_placement_warning(const Layout& layout, const std::vector<std::string>& hosts,
                                 const std::vector<int>& world_ranks) {
  if (layout.tp < 2) return "";
  const auto across = tp_groups_across_hosts(layout, hosts);
  if (across.empty()) return "";
  const std::vector<int>& g = across.front();
  std::string ranks, names;
  std::set<std::string> seen;
  for (size_t i = 0; i < g.size(); ++i) {
    ranks += (i ? "," : "") + std::to_string(world_ranks[static_cast<size_t>(g[i])]);
    const std::string& h = hosts[static_cast<size_t>(g[i])];
    if (seen.insert(h).second) names += (names.empty() ? "" : ", ") + h;
  }
  std::map<std::string, int> per_host;
  for (const auto& h : hosts) ++per_host[h];
  std::string counts;
  for (const auto& [h, n] : per_host) counts += (counts.empty() ? "" : ", ") + h + ": " + std::to_string(n);
  const int groups = static_cast<int>(hosts.size()) / layout.tp;
  return "paratorch: warning: " + std::to_string(across.size()) + " of " + std::to_string(groups) +
         " tp groups span hosts (world ranks " + ranks + " on " + names +
         "): their all-reduces, two per layer in forward and two in backward, then cross the network "
         "instead of staying inside a host. tp groups are tp consecutive ranks; start a number of ranks per "
         "host that tp = " + std::to_string(layout.tp) + " divides (ranks per host now: " + counts + ").";
}

}  // namespace paratorch
