// tests/parallel/ddp_reduce_scatter_test.cpp — the gradient reducer's
// reduce-scatter mode (ZeRO stage 2's gradient path): each rank ends a
// backward pass with its slice of every padded bucket, averaged over the
// group, through the same comm hooks as DDP (bf16 on the wire included);
// with the caller's own kept buckets (ZeRO stages 0-1) gradients accumulate
// in them over no_sync passes and are reduced in place, scattered or whole.
#include <gtest/gtest.h>

#include "mpi_test_env.h"
#include "parallel/ddp/reducer.h"
#include <paratorch/init.h>

namespace {

using paratorch::Reducer;
using paratorch::ReduceScatterOptions;

// Parameters of 15, 3, 6 and 2 elements; in 40-byte buckets (reverse order)
// {2, 6} | {3} | {15}: two buckets padded at np2 and np4, one of two members.
std::shared_ptr<torch::nn::Sequential> make_odd_seq() {
  auto seq = std::make_shared<torch::nn::Sequential>(torch::nn::Linear(5, 3), torch::nn::Tanh(),
                                                     torch::nn::Linear(3, 2));
  paratorch::init_parameters(**seq, 5, [](const std::string&, const torch::Tensor&) {
    return paratorch::InitSpec::normal(0.0, 0.5);
  });
  return seq;
}

torch::Tensor loss_on(torch::nn::Sequential& seq, int rank, int step) {
  auto gen = [&](const char* what) {
    return paratorch::generator_for(17, std::string(what) + std::to_string(rank) + "." + std::to_string(step));
  };
  const auto dtype = seq->parameters().front().scalar_type();  // the model's (bf16 in one case)
  auto out = seq->forward(torch::randn({4, 5}, gen("x")).to(dtype)).to(torch::kFloat);
  return torch::mse_loss(out, torch::randn({4, 2}, gen("y")));
}

struct ScatterRun {
  std::shared_ptr<torch::nn::Sequential> seq = make_odd_seq();
  std::vector<torch::Tensor> params = (*seq)->parameters();
  std::vector<paratorch::BucketLayout> layouts = paratorch::plan_buckets(params, 40);
  std::map<size_t, torch::Tensor> shards;  // bucket -> shard handed over in the last pass
  std::shared_ptr<Reducer> reducer;

  explicit ScatterRun(std::shared_ptr<paratorch::Communicator> comm, int reduce_slots = 0) {
    ReduceScatterOptions options;
    options.buckets = layouts;
    options.reduce_slots = reduce_slots;
    options.on_shard = [this](size_t b, const torch::Tensor& shard) { shards[b] = shard.clone(); };
    std::vector<std::string> names;
    for (const auto& item : (*seq)->named_parameters()) names.push_back(item.key());
    reducer = std::make_shared<Reducer>(params, names, std::move(comm), options);
    reducer->install_hooks();
  }
};

// The reference: every rank's gradient of the whole group, averaged by a
// plain all-reduce, laid out as bucket b's padded buffer; this rank's slice.
torch::Tensor expected_shard(torch::nn::Sequential& ref, const paratorch::BucketLayout& layout,
                             paratorch::Communicator& comm) {
  std::vector<torch::Tensor> grads;
  auto params = ref->parameters();
  for (size_t i : layout.params) grads.push_back(params[i].grad().reshape({-1}));
  auto flat = torch::cat(grads);
  comm.all_reduce(flat, paratorch::ReduceOp::kAvg);
  const int64_t padded = paratorch::padded_bucket_numel(flat.numel(), comm.size()), shard = padded / comm.size();
  flat = torch::cat({flat, torch::zeros({padded - flat.numel()})});
  return flat.narrow(0, shard * comm.rank(), shard);
}

// A comm hook whose reduce-scatter runs only when its work is waited for,
// so a bucket is still unreduced when the next one launches: a slot reused
// before its bucket handed over its shard would hand over the next
// bucket's gradients.
struct LazyWork : paratorch::Work {
  std::function<void()> run;
  bool done = false;
  void wait() override {
    if (!done) run();
    done = true;
  }
  bool is_completed() override { return done; }
};
paratorch::CommHook lazy_reduce_scatter() {
  return [](paratorch::Communicator& comm, paratorch::GradBucket& bucket) -> paratorch::WorkHandle {
    auto work = std::make_shared<LazyWork>();
    work->run = [&comm, in = bucket.buffer, out = bucket.shard] {
      comm.reduce_scatter(out, in, paratorch::ReduceOp::kAvg);
    };
    return work;
  };
}

void expect_averaged_slices(int reduce_slots, bool lazy = false) {
  auto& world = test_world();
  auto comm = world.comm();
  ScatterRun run(comm, reduce_slots);
  if (lazy) run.reducer->set_comm_hook(lazy_reduce_scatter());
  ASSERT_EQ(run.layouts.size(), 3u);
  ASSERT_EQ(run.layouts[0].params.size(), 2u);
  auto ref = make_odd_seq();
  for (int step = 0; step < 2; ++step) {
    run.shards.clear();
    (*ref)->zero_grad();
    loss_on(*run.seq, comm->rank(), step).backward();
    loss_on(*ref, comm->rank(), step).backward();
    ASSERT_EQ(run.shards.size(), run.layouts.size()) << "step " << step;
    for (size_t b = 0; b < run.layouts.size(); ++b) {
      const auto want = expected_shard(*ref, run.layouts[b], *comm);
      ASSERT_EQ(run.shards[b].sizes(), want.sizes()) << "bucket " << b;
      EXPECT_TRUE(torch::allclose(run.shards[b], want, 1e-6, 1e-7))
          << "bucket " << b << " step " << step << ": got " << run.shards[b] << " want " << want;
    }
    // The full gradients left .grad: between passes only shards remain.
    for (const auto& p : run.params) EXPECT_FALSE(p.grad().defined());
  }
}

TEST(DDPReduceScatter, EachRankGetsItsAveragedSliceOfEveryPaddedBucketEachPass) { expect_averaged_slices(0); }

// The buckets reduced in slots of the communicator's reduce buffer (ZeRO
// stage 2 on the CPU; shared memory on one node): 3 buckets in 1 slot (each
// waits for the one before to hand over its shard) and in 2 (the third
// takes the first's slot), with the same shards; also when each reduction
// runs only once waited for.
TEST(DDPReduceScatter, BucketsReducedInCommunicatorSlotsGiveTheSameSlices) {
  for (int slots : {1, 2})
    for (bool lazy : {false, true}) {
      SCOPED_TRACE(std::to_string(slots) + " slot(s)" + (lazy ? ", reduced when waited for" : ""));
      expect_averaged_slices(slots, lazy);
    }
}

TEST(DDPReduceScatter, Bf16HookReduceScattersIn16Bits) {
  auto& world = test_world();
  auto comm = world.comm();
  ScatterRun run(comm);
  run.reducer->set_comm_hook(paratorch::comm_hooks::bf16_compress());
  auto ref = make_odd_seq();
  loss_on(*run.seq, comm->rank(), 0).backward();
  loss_on(*ref, comm->rank(), 0).backward();
  double any = 0;
  for (size_t b = 0; b < run.layouts.size(); ++b) {
    const auto want = expected_shard(*ref, run.layouts[b], *comm);
    const auto& got = run.shards.at(b);
    EXPECT_TRUE(torch::equal(got, got.to(torch::kBFloat16).to(torch::kFloat))) << "bucket " << b << " not bf16";
    const double scale = std::max(want.abs().max().item<double>(), 1e-3);
    EXPECT_LT((got - want).abs().max().item<double>(), 2e-2 * scale) << "bucket " << b;
    any = std::max(any, (got - want).abs().max().item<double>());
  }
  if (comm->size() > 1) EXPECT_GT(any, 0.0) << "bf16 hook left the fp32 average untouched";
}

// The caller's buckets (ReduceScatterOptions::buffers): two passes, the
// first under no_sync, accumulate in the kept buffers and the second reduces
// them in place: the shard (scattered) or the whole buffer (all_reduce) holds
// the group's average of both passes' gradients. fp32 members alias the
// buffer through .grad; bf16 members are widened into it and leave .grad.
void check_caller_buffers(bool all_reduce, torch::ScalarType dtype) {
  auto comm = test_world().comm();
  auto seq = make_odd_seq(), ref = make_odd_seq();
  (*seq)->to(dtype);
  (*ref)->to(dtype);
  auto params = (*seq)->parameters();
  const auto layouts = paratorch::plan_buckets(params, 40);
  const int ranks = all_reduce ? 1 : comm->size();
  ReduceScatterOptions options;
  options.buckets = layouts;
  options.all_reduce = all_reduce;
  for (const auto& l : layouts) options.buffers.push_back(torch::zeros({paratorch::padded_bucket_numel(l.numel, ranks)}));
  std::vector<std::string> names(params.size(), "p");
  auto reducer = std::make_shared<Reducer>(params, names, comm, options);
  reducer->install_hooks();
  std::vector<torch::Tensor> want(params.size());  // fp32 sums of the widened per-pass gradients
  for (int pass = 0; pass < 2; ++pass) {
    reducer->set_sync(pass == 1);
    loss_on(*seq, comm->rank(), pass).backward();
    (*ref)->zero_grad();
    loss_on(*ref, comm->rank(), pass).backward();
    auto ref_params = (*ref)->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      auto g = ref_params[i].grad().to(torch::kFloat, false, /*copy=*/true);  // zero_grad() zeroes .grad in place
      want[i] = pass == 0 ? g : want[i] + g;
    }
    if (dtype != torch::kFloat)
      for (const auto& p : params) EXPECT_FALSE(p.grad().defined()) << "pass " << pass << ": not moved into the bucket";
  }
  for (size_t b = 0; b < layouts.size(); ++b) {
    std::vector<torch::Tensor> grads;
    for (size_t i : layouts[b].params) grads.push_back(want[i].reshape({-1}));
    auto flat = torch::cat(grads);
    comm->all_reduce(flat, paratorch::ReduceOp::kAvg);
    const auto& buffer = options.buffers[b];
    flat = torch::cat({flat, torch::zeros({buffer.numel() - flat.numel()})});
    const int64_t n = buffer.numel() / (all_reduce ? 1 : comm->size());
    const int64_t begin = all_reduce ? 0 : n * comm->rank();
    EXPECT_TRUE(torch::allclose(buffer.narrow(0, begin, n), flat.narrow(0, begin, n), 1e-5, 1e-7))
        << "bucket " << b << (all_reduce ? " (all_reduce)" : "") << ": got " << buffer.narrow(0, begin, n)
        << " want " << flat.narrow(0, begin, n);
  }
}

TEST(DDPReduceScatter, CallerBuffersAccumulateOverNoSyncAndReduceTheShardInPlace) {
  check_caller_buffers(false, torch::kFloat);
}

TEST(DDPReduceScatter, CallerBuffersAllReduceWholeWidenedBf16Gradients) {
  check_caller_buffers(true, torch::kBFloat16);
}

}  // namespace
