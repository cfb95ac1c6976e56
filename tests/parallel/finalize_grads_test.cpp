// tests/parallel/finalize_grads_test.cpp — the finalize step's sums and the
// global gradient norm's counting rules (src/parallel/finalize_grads.h,
// grad_norm.h) on small tensors whose every rank's values are known, with
// the world standing for the tp, pp or dp group under test. Each rule has
// its own case, so a broken rule names itself.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "parallel/finalize_grads.h"
#include "parallel/grad_norm.h"
#include <paratorch/errors.h>
#include <paratorch/grad_clip.h>

#include <cmath>

using namespace paratorch;
using parallel::NormEntry;

namespace {

Communicator& world() { return *test_world().comm(); }

double squares(const torch::Tensor& t) { return t.to(torch::kDouble).pow(2).sum().item<double>(); }

double local_squares(const std::vector<NormEntry>& entries) {
  double s = 0;
  for (const auto& e : entries) s += squares(e.grad);
  return s;
}

tensor_parallel::ShardSpec shard_of_world() {
  tensor_parallel::ShardSpec spec;
  spec.dim = 0;
  spec.rank = world().rank();
  spec.size = world().size();
  return spec;
}

// Rank r's gradient: `numel` elements, all r + 1 + offset.
torch::Tensor grad_of(int r, int64_t numel, double offset = 0) { return torch::full({numel}, r + 1 + offset); }

}  // namespace

// A parameter whole on every tp rank has the same gradient there: counted once, not tp times.
TEST(GradNorm, ReplicatedOverTpCountedOnce) {
  const std::vector<NormEntry> entries{{torch::full({3}, 2.0), {}}};
  EXPECT_DOUBLE_EQ(parallel::sum_squares_across(local_squares(entries), entries, {nullptr, &world()}), 12.0);
  EXPECT_DOUBLE_EQ(parallel::sum_squares_of(entries, {nullptr, &world()}), 12.0) << "the one-read path";
}

// tp shards are distinct slices: their squares are summed over tp, beside a replicated parameter counted once.
TEST(GradNorm, TpShardsSummedOverTp) {
  const int n = world().size();
  const std::vector<NormEntry> entries{{grad_of(world().rank(), 2), shard_of_world()}, {torch::ones({5}), {}}};
  double expected = 5;
  for (int r = 0; r < n; ++r) expected += squares(grad_of(r, 2));
  EXPECT_DOUBLE_EQ(parallel::sum_squares_across(local_squares(entries), entries, {nullptr, &world()}), expected);
  EXPECT_DOUBLE_EQ(parallel::sum_squares_of(entries, {nullptr, &world()}), expected) << "the one-read path";
}

// Pipeline stages hold distinct parameters (summed over pp); the last stage's
// tied copy of the first stage's weight repeats its owner's gradient (after
// finalize_gradients): its owner counts it, the copy does not.
TEST(GradNorm, StagesSummedOverPpTiedCopyCountedOnce) {
  const int n = world().size(), r = world().rank();
  std::vector<NormEntry> entries{{grad_of(r, 4), {}}};
  if (r == n - 1 && n > 1) entries.push_back({grad_of(0, 4), {}, /*tied_copy=*/true});
  double expected = 0;
  for (int s = 0; s < n; ++s) expected += squares(grad_of(s, 4));
  EXPECT_DOUBLE_EQ(parallel::sum_squares_across(local_squares(entries), entries, {nullptr, nullptr, &world()}),
                   expected);
  EXPECT_DOUBLE_EQ(parallel::sum_squares_of(entries, {nullptr, nullptr, &world()}), expected) << "the one-read path";
}

// Gradients sharded over dp (ZeRO pieces) are disjoint: every kind is summed
// over the shard group, replicated-over-tp pieces included.
TEST(GradNorm, PiecesSummedOverDpShards) {
  const int n = world().size(), r = world().rank();
  auto self = test_world().comm()->split(r, 0, "self");  // tp of one rank: nothing to count once
  const std::vector<NormEntry> entries{{grad_of(r, 3), {}}, {grad_of(r, 2, 1), shard_of_world()}};
  double expected = 0;
  for (int s = 0; s < n; ++s) expected += squares(grad_of(s, 3)) + squares(grad_of(s, 2, 1));
  EXPECT_DOUBLE_EQ(parallel::sum_squares_across(local_squares(entries), entries, {&world(), self.get()}), expected);
  EXPECT_DOUBLE_EQ(parallel::sum_squares_of(entries, {&world(), self.get()}), expected) << "the one-read path";
}

// Replicas share the reading: their shares of the concatenated elements are
// contiguous, cover every element once, and differ in size by at most one,
// cutting across tensors where the cut falls; tied flags and specs stay.
TEST(GradNorm, ReplicaSharesCoverEveryElementOnce) {
  const std::vector<NormEntry> entries{{torch::arange(5.0), {}},
                                       {torch::Tensor(), {}},
                                       {torch::arange(5.0, 12.0).reshape({7, 1}), shard_of_world()},
                                       {torch::arange(12.0, 13.0), {}, /*tied_copy=*/true}};
  for (int replicas : {1, 2, 3, 5, 13, 14}) {
    std::vector<double> seen;
    for (int r = 0; r < replicas; ++r) {
      int64_t size = 0;
      for (const auto& piece : parallel::replica_share(entries, r, replicas)) {
        ASSERT_EQ(piece.grad.dim(), 1);
        EXPECT_EQ(piece.spec.sharded(), piece.grad[0].item<double>() >= 5 && piece.grad[0].item<double>() < 12);
        EXPECT_EQ(piece.tied_copy, piece.grad[0].item<double>() == 12);
        for (int64_t i = 0; i < piece.grad.numel(); ++i) seen.push_back(piece.grad[i].item<double>());
        size += piece.grad.numel();
      }
      EXPECT_LE(std::abs(size - 13.0 / replicas), 1.0) << "replica " << r << " of " << replicas;
    }
    ASSERT_EQ(seen.size(), 13u) << replicas << " replicas";
    for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], static_cast<double>(i)) << replicas << " replicas";
  }
}

// Gradients equal on every replica: each reads its share, the sums add over
// the replicas, and the norm is the one a single rank reading everything
// gets (tp shards summed over tp beside it, the tied copy left to its owner).
TEST(GradNorm, ReplicasEachReadAShareOfTheSameNorm) {
  auto self = test_world().comm()->split(world().rank(), 0, "self");
  const std::vector<NormEntry> entries{{torch::arange(1.0, 8.0), {}},
                                       {torch::full({6}, 3.0), shard_of_world()},
                                       {torch::ones({2}), {}, /*tied_copy=*/true}};
  const double whole = parallel::sum_squares_of(entries, {nullptr, self.get()});
  EXPECT_DOUBLE_EQ(whole, 140.0 + 54.0);
  EXPECT_DOUBLE_EQ(parallel::sum_squares_of(entries, {nullptr, self.get(), nullptr, &world()}), whole);
  EXPECT_DOUBLE_EQ(parallel::sum_squares_across(whole, entries, {nullptr, self.get()}), whole - 2.0)
      << "the rereading path sets the tied copy apart from `local`";
}

// Sequence-parallel partial gradients end as their sum over tp, shapes kept.
TEST(FinalizeGradients, PartialGradientsSummedOverTp) {
  const int n = world().size(), r = world().rank();
  auto a = grad_of(r, 6).reshape({2, 3}), b = grad_of(r, 2, 10);
  parallel::FinalizeGradients f;
  f.partial_over_tp = {a, b};
  f.tp = &world();
  parallel::finalize_gradients(f);
  auto want_a = torch::zeros({2, 3}), want_b = torch::zeros({2});
  for (int s = 0; s < n; ++s) want_a += grad_of(s, 6).reshape({2, 3}), want_b += grad_of(s, 2, 10);
  EXPECT_TRUE(torch::equal(a, want_a)) << a;
  EXPECT_TRUE(torch::equal(b, want_b)) << b;
}

// Every copy of a tied weight ends with the sum of all copies' gradients:
// one copy on each end (a pipeline's embedding group), and several copies on
// one rank with another rank holding none (a Pipeline's tied groups).
TEST(FinalizeGradients, TiedCopiesEndWithTheirSum) {
  const int n = world().size(), r = world().rank();
  auto mine = grad_of(r, 4);
  parallel::FinalizeGradients f;
  f.tied = {{{mine}, {}}};
  f.tied_ranks = &world();
  parallel::finalize_gradients(f);
  auto want = torch::zeros({4});
  for (int s = 0; s < n; ++s) want += grad_of(s, 4);
  EXPECT_TRUE(torch::equal(mine, want)) << mine;

  parallel::TiedGradients two;
  if (r == 0) two.copies = {torch::full({3}, 1.0), torch::full({3}, 2.0)};
  else two.zero = torch::zeros({3});
  parallel::sum_tied_gradients(two, &world());
  for (const auto& c : two.copies) EXPECT_TRUE(torch::equal(c, torch::full({3}, 3.0))) << c;
}

// The public clip (paratorch/grad_clip.h) over pipeline stages: each rank's
// parameters are its own, so the squares add over pp, and every stage
// scales by the same coefficient.
TEST(GradNormPublicApi, StagesAddOverPp) {
  auto p = torch::zeros({3}, torch::requires_grad());
  p.mutable_grad() = grad_of(world().rank(), 3);
  double want = 0;
  for (int r = 0; r < world().size(); ++r) want += squares(grad_of(r, 3));
  want = std::sqrt(want);
  const GradNormGroups groups{nullptr, nullptr, test_world().comm()};
  EXPECT_NEAR(grad_norm({p, p}, groups), want, 1e-9 * want) << "a tensor listed twice counts once";
  EXPECT_NEAR(clip_grad_norm({p}, want / 2, groups), want, 1e-9 * want);
  EXPECT_TRUE(torch::allclose(p.grad(), grad_of(world().rank(), 3) * (want / 2) / (want + 1e-6)));
  EXPECT_THROW(clip_grad_norm({p}, -1.0, groups), UsageError);
}

// The public clip over DDP replicas: equal gradients, each replica reading
// its share, clip by the norm one process measures.
TEST(GradNormPublicApi, ReplicasReadSharesOfOneNorm) {
  auto p = torch::zeros({5}, torch::requires_grad());
  p.mutable_grad() = torch::arange(1.0, 6.0);
  GradNormGroups groups;
  groups.replicas = test_world().comm();
  const double want = std::sqrt(55.0);
  EXPECT_NEAR(grad_norm({p}, groups), want, 1e-12 * want);
  EXPECT_NEAR(clip_grad_norm({p}, 1.0, groups), want, 1e-12 * want);
  EXPECT_TRUE(torch::allclose(p.grad(), torch::arange(1.0, 6.0) / (want + 1e-6)));
}
