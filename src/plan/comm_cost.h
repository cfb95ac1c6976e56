// src/plan/comm_cost.h — time of the collectives and transfers a layout
// runs, by the alpha-beta model of the algorithms paratorch uses.
//
// A group of n ranks moving a buffer of S bytes with per-accelerator
// bandwidth beta (bytes/s) and per-message latency alpha (Thakur,
// Rabenseifner & Gropp, 2005, "Optimization of Collective Communication
// Operations in MPICH"; Patarasuk & Yuan, 2009, for the ring):
//   ring all-reduce          2 (n-1) alpha + 2 (n-1)/n * S / beta
//   reduce-scatter, all-gather  (n-1) alpha +   (n-1)/n * S / beta
//   point-to-point              alpha + S / beta
// Which link a group uses follows the rank order (Layout: tp varies
// fastest, then dp, then pp): a group whose ranks lie within one node uses
// the intra-node link, any other the inter-node one (its slowest hop, which
// a ring crosses on every step).
#pragma once
#include "plan/cluster.h"

namespace paratorch::plan {

/// A group of `size` ranks whose consecutive members are `stride` ranks apart.
struct GroupSpan {
  int size = 1;
  int stride = 1;
  /// True when the group's ranks sit on more than one node of `cluster`.
  bool crosses_nodes(const Cluster& cluster) const;
};

struct CommCost {
  const Cluster& cluster;
  double all_reduce_s(double bytes, const GroupSpan& group) const;
  double reduce_scatter_s(double bytes, const GroupSpan& group) const;
  double all_gather_s(double bytes, const GroupSpan& group) const { return reduce_scatter_s(bytes, group); }
  /// One transfer between ranks `distance` apart.
  double p2p_s(double bytes, int distance) const;

 private:
  double alpha(bool inter) const;
  double beta(bool inter) const;
};

}  // namespace paratorch::plan
