// src/layout/process_groups.cpp — the one place that splits communicators.
#include <paratorch/errors.h>
#include <paratorch/layout.h>

#include "comm/host_table.h"
#include "layout/placement.h"

#include <cstdio>

namespace paratorch {

ProcessGroups::ProcessGroups(std::shared_ptr<Communicator> world, Layout layout)
    : layout_(layout.resolve(world->size())), world_(std::move(world)) {
  const Layout& L = layout_;
  coords_ = L.coords_of(world_->rank());
  const Coords& c = coords_;
  // Each split groups the ranks that share every coordinate but one; the
  // colour encodes the shared coordinates, the key orders members by the
  // free one. All ranks make the same splits in the same order.
  dp_ = world_->split(c.pp * L.tp + c.tp, c.dp, "dp");
  pp_ = world_->split(c.dp * L.tp + c.tp, c.pp, "pp");
  tp_ = world_->split(c.pp * L.dp + c.dp, c.tp, "tp");
  mp_ = world_->split(c.dp, c.pp * L.tp + c.tp, "model_parallel");
  // Ends of each pipeline share a colour per (dp, tp); middle stages get
  // colours of their own (past every end colour), so they form singletons.
  const bool end = c.pp == 0 || c.pp == L.pp - 1;
  embedding_ = world_->split(end ? c.dp * L.tp + c.tp : L.dp * L.tp + world_->rank(), c.pp, "embedding");
  warn_about_placement();
}

void ProcessGroups::warn_about_placement() const {
  static bool warned = false;  // once per process: verify builds groups twice
  if (world_->rank() != 0 || warned) return;
  const std::vector<int>& world_ranks = world_->world_ranks();
  std::vector<std::string> hosts;
  for (int r : world_ranks) hosts.push_back(comm::host_of(r));
  if (hosts.empty() || hosts.front().empty()) return;  // hosts unknown (no World)
  const std::string warning = tp_placement_warning(layout_, hosts, world_ranks);
  if (warning.empty()) return;
  std::fprintf(stderr, "%s\n", warning.c_str());
  warned = true;
}

}  // namespace paratorch
