// paratorch/layout.h — how the ranks of a job are arranged (dp × pp × tp),
// and the communicators built from that arrangement.
//
// Rank order follows Megatron-LM: tp varies fastest, then dp, then pp:
//   rank = pp_index * (dp * tp) + dp_index * tp + tp_index
// so the ranks of one tensor-parallel group are neighbours (same node, fast
// links) and pipeline stages are furthest apart. docs/layout.md has a table.
//
// Example:
///   auto layout = paratorch::Layout::parse("dp=auto,pp=2,tp=1").resolve(world.size());
///   paratorch::ProcessGroups groups(world.comm(), layout);
///   ddp_comm = groups.dp();                    // my data-parallel replicas
#pragma once
#include <paratorch/communicator.h>

#include <memory>
#include <string>
#include <vector>

namespace paratorch {

struct Coords {
  int dp = 0, pp = 0, tp = 0;
};

struct Layout {
  int dp = 0;  // 0 = auto: world / (pp * tp)
  int pp = 1;
  int tp = 1;

  /// Parses "dp=2,pp=2,tp=1" (any order, missing keys keep defaults, dp may
  /// be "auto"). Throws UsageError naming the bad key or value.
  static Layout parse(const std::string& text);
  /// Fills dp when auto and checks dp*pp*tp == world_size; the error lists
  /// every valid layout for that world size.
  Layout resolve(int world_size) const;
  /// All (dp, pp, tp) with product world_size.
  static std::vector<Layout> factorizations(int world_size);

  int world_size() const { return dp * pp * tp; }
  Coords coords_of(int rank) const;
  int rank_of(Coords c) const;
  /// "dp=2,pp=1,tp=1"
  std::string to_string() const;
};

/// Owns every communicator of the job built from a Layout. Nothing else
/// splits communicators. Construction is collective over `world`. When a tp
/// group's ranks run on more than one host, rank 0 prints a warning once
/// (tp all-reduces belong inside a host; docs/cluster.md, "Placement").
class ProcessGroups {
 public:
  ProcessGroups(std::shared_ptr<Communicator> world, Layout layout);

  const Layout& layout() const { return layout_; }
  const Coords& coords() const { return coords_; }
  std::shared_ptr<Communicator> world() const { return world_; }
  /// Same pp and tp coordinates: the replicas whose gradients are averaged.
  std::shared_ptr<Communicator> dp() const { return dp_; }
  /// Same dp and tp coordinates: the stages of one pipeline.
  std::shared_ptr<Communicator> pp() const { return pp_; }
  /// Same dp and pp coordinates: the shards of one tensor-parallel layer.
  std::shared_ptr<Communicator> tp() const { return tp_; }
  /// Same dp coordinate: one whole model replica (pp × tp ranks).
  std::shared_ptr<Communicator> model_parallel() const { return mp_; }
  /// Megatron's embedding group: the first and the last pipeline stage of
  /// this pipeline (same dp and tp), which both hold a copy of weights tied
  /// across the model's ends (gpt's token embedding and output head) and
  /// all-reduce their gradients every step. A middle stage gets a group of
  /// itself alone; with pp = 1 it is the rank alone as well.
  std::shared_ptr<Communicator> embedding() const { return embedding_; }
  /// Pipeline neighbours as pp-group ranks; -1 at the ends.
  int prev_stage() const { return coords_.pp > 0 ? coords_.pp - 1 : -1; }
  int next_stage() const { return coords_.pp + 1 < layout_.pp ? coords_.pp + 1 : -1; }

 private:
  void warn_about_placement() const;

  Layout layout_;
  Coords coords_;
  std::shared_ptr<Communicator> world_, dp_, pp_, tp_, mp_, embedding_;
};

}  // namespace paratorch
