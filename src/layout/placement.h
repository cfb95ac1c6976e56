// src/layout/placement.h — whether a layout's groups sit well on the hosts.
//
// Tensor parallelism all-reduces activations in every layer's forward and
// backward: it needs the fastest links, those inside one host. Megatron's
// rule is that tp groups stay within a node while pp and dp span nodes.
// Ranks are ordered with tp varying fastest (layout.h), so a tp group is tp
// consecutive ranks, and it stays inside a host exactly when the launcher's
// ranks per host are a multiple of tp. This file finds the groups that do
// not, so the job can say so before it runs slowly.
#pragma once
#include <paratorch/layout.h>

#include <string>
#include <vector>

namespace paratorch {

/// The tp groups (each as its members' indices into `hosts`) whose ranks run
/// on more than one host. `layout` must be resolved for hosts.size() ranks.
std::vector<std::vector<int>> tp_groups_across_hosts(const Layout& layout, const std::vector<std::string>& hosts);

/// A warning naming the first such group, its hosts and the cost; "" when
/// every tp group is inside one host. `world_ranks[i]` is rank i's world rank.
std::string tp_placement_warning(const Layout& layout, const std::vector<std::string>& hosts,
                                 const std::vector<int>& world_ranks);

}  // namespace paratorch
