// tests/layout/process_groups_test.cpp — every layout of the world builds
// groups whose members are exactly the ranks sharing the other coordinates.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include <paratorch/layout.h>

using paratorch::Coords;
using paratorch::Layout;
using paratorch::ProcessGroups;

namespace {

std::vector<int> expected_members(const Layout& L, Coords me, char axis) {
  std::vector<int> ranks;
  int n = axis == 'd' ? L.dp : axis == 'p' ? L.pp : L.tp;
  for (int i = 0; i < n; ++i) {
    Coords c = me;
    (axis == 'd' ? c.dp : axis == 'p' ? c.pp : c.tp) = i;
    ranks.push_back(L.rank_of(c));
  }
  return ranks;
}

}  // namespace

TEST(ProcessGroups, EveryFactorizationGroupsTheRightRanks) {
  auto& world = test_world();
  for (const Layout& L : Layout::factorizations(world.size())) {
    SCOPED_TRACE(L.to_string());
    ProcessGroups g(world.comm(), L);
    Coords me = g.coords();
    EXPECT_EQ(L.rank_of(me), world.rank());
    EXPECT_EQ(g.dp()->world_ranks(), expected_members(L, me, 'd'));
    EXPECT_EQ(g.pp()->world_ranks(), expected_members(L, me, 'p'));
    EXPECT_EQ(g.tp()->world_ranks(), expected_members(L, me, 't'));
    EXPECT_EQ(g.model_parallel()->size(), L.pp * L.tp);
    EXPECT_EQ(g.dp()->rank(), me.dp);
    EXPECT_EQ(g.pp()->rank(), me.pp);
    EXPECT_EQ(g.tp()->rank(), me.tp);
    // The groups really communicate: sum of world ranks over the dp group.
    auto t = torch::tensor({world.rank()}, torch::kLong);
    g.dp()->all_reduce(t);
    int64_t want = 0;
    for (int r : expected_members(L, me, 'd')) want += r;
    EXPECT_EQ(t.item<int64_t>(), want);
    EXPECT_EQ(g.prev_stage(), me.pp > 0 ? me.pp - 1 : -1);
    EXPECT_EQ(g.next_stage(), me.pp + 1 < L.pp ? me.pp + 1 : -1);
    // The embedding group: first and last stage of my pipeline, or me alone.
    std::vector<int> ends = {L.rank_of({me.dp, 0, me.tp})};
    if (L.pp > 1) ends.push_back(L.rank_of({me.dp, L.pp - 1, me.tp}));
    const bool at_end = me.pp == 0 || me.pp == L.pp - 1;
    EXPECT_EQ(g.embedding()->world_ranks(), at_end ? ends : std::vector<int>{world.rank()});
  }
}
