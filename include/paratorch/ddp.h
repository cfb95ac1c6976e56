// paratorch/ddp.h — synchronous data parallelism for any torch::nn::Module,
// the C++ counterpart of torch.nn.parallel.DistributedDataParallel.
//
// Each replica computes gradients on its slice of the global batch; gradients
// are packed into buckets (bucket_mb, filled in reverse registration order as
// PyTorch does, since backward produces the last layers' gradients first) and
// each bucket's all-reduce starts the moment its last gradient arrives, on a
// communication thread, while backward continues. When loss.backward()
// returns, every parameter's .grad holds the average over the replicas.
//
// Example (the classic PyTorch DDP snippet):
///   paratorch::World world(argc, argv);
///   auto model = std::make_shared<Net>();
///   paratorch::DistributedDataParallel ddp(model, world.comm());  // broadcasts rank 0's weights
///   torch::optim::SGD opt(model->parameters(), 0.01);
///   for (auto& [x, y] : my_slice_of_each_global_batch) {
///     opt.zero_grad();
///     torch::mse_loss(model->forward(x), y).backward();  // all-reduce overlaps backward
///     opt.step();                                          // grads are already averaged
///   }
//
// Gradient accumulation: backward passes inside `auto guard = ddp.no_sync();`
// only accumulate locally; the next backward outside it reduces the total.
//
// Communication hooks (PyTorch's register_comm_hook): a hook decides how each
// bucket is reduced. Built in: comm_hooks::allreduce() (the default) and
// comm_hooks::bf16_compress() / fp16_compress(), which put 16-bit values on
// the wire (half the bytes) at 16-bit precision:
///   ddp.register_comm_hook(paratorch::comm_hooks::bf16_compress());
//
// Uneven inputs (PyTorch's Join): a rank that runs out of data keeps
// answering the others' reductions, so nobody hangs; each step's gradient is
// averaged over the ranks that contributed to it.
///   auto join = ddp.join();                   // every rank, before its loop
///   for (auto& batch : my_batches) { ...; loss.backward(); opt.step(); }   // any count per rank
///   join.finish();                            // answers the others until all are done
#pragma once
#include <paratorch/communicator.h>

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace paratorch {

/// What a communication hook gets of one bucket (PyTorch's GradBucket).
struct GradBucket {
  /// Bucket index; buckets are reduced in index order on every rank.
  size_t index = 0;
  /// The bucket's gradients, back to back: this rank's local gradients on
  /// entry; the hook leaves their average over `divisor` ranks here.
  torch::Tensor buffer;
  /// Ranks whose gradients are in this reduction (the group's size, or the
  /// ranks that have not joined yet: see DistributedDataParallel::join()).
  int divisor = 1;
  /// Reduce-scatter (ZeRO stage 2: zero.h): when defined, `buffer`'s length
  /// is a multiple of the group's size and the hook leaves the average of
  /// this rank's slice (rank r: elements [r·n, (r+1)·n), n = shard.numel())
  /// here instead; `buffer` may then be left with anything. The built-in
  /// hooks handle both forms.
  torch::Tensor shard;
  /// All-reduce buckets: each member's gradient as a view of `buffer` with
  /// its parameter's shape, and the parameter's name (PyTorch's
  /// GradBucket.gradients() / parameters()); empty for reduce-scatter buckets.
  std::vector<torch::Tensor> gradients;
  std::vector<std::string> names;
};

/// Starts the reduction of `bucket` over `comm` and returns its handle; when
/// the handle's wait() returns, bucket.buffer (bucket.shard, when defined)
/// holds the averaged gradients.
/// Every rank must issue the same collectives for the same bucket.
using CommHook = std::function<WorkHandle(Communicator& comm, GradBucket& bucket)>;

/// `work`, then `after()` on the thread that waits for it (once): how a hook
/// decompresses or rescales after its collective.
WorkHandle then(WorkHandle work, std::function<void()> after);
/// A handle that is already complete: for hooks that reduce before
/// returning, or send nothing.
WorkHandle completed_work();

namespace comm_hooks {
/// The default: one all-reduce of the bucket in its own dtype, averaged
/// (a reduce-scatter when the bucket has a shard).
CommHook allreduce();
/// Divides by the divisor, casts the bucket to bf16 / fp16, all-reduces the
/// 16-bit values (summed in pairs at fp32 and rounded, as GPUs do), and casts
/// back: half the bytes on the wire, 16-bit precision in the gradients.
CommHook bf16_compress();
CommHook fp16_compress();
}  // namespace comm_hooks

struct DDPOptions {
  /// Bucket capacity in MiB (PyTorch's bucket_cap_mb).
  double bucket_mb = 25.0;
  /// Parameters that get no gradient in a backward pass are reduced with
  /// their current (usually zero) gradient instead of raising an error.
  bool find_unused_parameters = false;
  /// Broadcast buffers (e.g. running statistics) from rank 0 at construction.
  bool broadcast_buffers = true;
  /// Main gradients (Megatron-LM's main_grad, for a bf16/fp16 module): when
  /// set (torch::kFloat), each bucket holds its gradients in this dtype. As a
  /// parameter's gradient becomes final it is added into its slot and the
  /// module's .grad is dropped, so micro-batches (no_sync) accumulate and
  /// the all-reduce sums at fp32, not at the module's 16 bits. The slots are
  /// zeroed by the first gradient of each accumulation (the first backward
  /// after a reduced one); read them with DistributedDataParallel::main_grads()
  /// (MasterWeights::use_gradients takes them). Unset: .grad is the bucket's view.
  std::optional<torch::ScalarType> main_grad_dtype;
  /// UsageError naming the field.
  void validate() const;
};

/// Which parameters share a bucket (indices into the module's parameters()).
struct BucketLayout {
  std::vector<size_t> params;
  int64_t numel = 0;
  torch::ScalarType dtype = torch::kFloat;
};

/// Groups parameters into buckets of at most cap_bytes (a parameter larger
/// than the cap gets a bucket of its own), walking them in reverse order and
/// starting a new bucket whenever the dtype or device changes. With
/// `gradient_dtype` (DDPOptions::main_grad_dtype) every gradient is counted
/// and grouped in that dtype instead of its parameter's.
std::vector<BucketLayout> plan_buckets(const std::vector<torch::Tensor>& params, int64_t cap_bytes,
                                       std::optional<torch::ScalarType> gradient_dtype = std::nullopt);

class Reducer;

class DistributedDataParallel {
 public:
  /// Collective over `comm`: broadcasts parameters (and buffers) from rank 0.
  DistributedDataParallel(std::shared_ptr<torch::nn::Module> module,
                          std::shared_ptr<Communicator> comm, DDPOptions options = {});
  ~DistributedDataParallel();

  torch::nn::Module& module() { return *module_; }
  std::shared_ptr<Communicator> comm() const { return comm_; }

  /// Waits until every bucket is reduced. backward() already does this when
  /// it returns; call it explicitly only to be sure nothing is in flight.
  void finish();

  /// Replaces how buckets are reduced (before the first backward pass).
  void register_comm_hook(CommHook hook);

  /// Uneven inputs: see the header comment. Collective: every rank of the
  /// group creates one before its loop and calls finish() after it.
  class Join {
   public:
    explicit Join(DistributedDataParallel& ddp);
    ~Join();  // finish() if it was not called (unless an exception is unwinding)
    Join(Join&& other) noexcept;
    Join(const Join&) = delete;
    Join& operator=(const Join&) = delete;
    /// This rank is out of data: shadow the others' bucket reductions with
    /// zero gradients until every rank has finished, then copy parameters
    /// and buffers from the rank that took the most steps, so every replica
    /// ends equal. Returns the number of reductions this rank shadowed.
    int64_t finish();
   private:
    DistributedDataParallel* ddp_;
  };
  Join join();

  /// Scope in which backward passes accumulate gradients without reducing.
  class NoSync {
   public:
    explicit NoSync(Reducer& reducer);
    ~NoSync();
    NoSync(NoSync&& other) noexcept;
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;
   private:
    Reducer* reducer_;
  };
  NoSync no_sync();

  /// The bucket assignment (for inspection and tests).
  const std::vector<BucketLayout>& buckets() const;
  /// Number of bucket all-reduces launched since construction.
  int64_t reductions_launched() const;
  /// With DDPOptions::main_grad_dtype: each parameter's main gradient (a
  /// tensor of its shape in the buckets' dtype), in module().parameters()
  /// order, valid as long as this object. UsageError without it.
  std::vector<torch::Tensor> main_grads() const;

 private:
  std::shared_ptr<torch::nn::Module> module_;
  std::shared_ptr<Communicator> comm_;
  std::shared_ptr<Reducer> reducer_;
  bool broadcast_buffers_ = true;
};

}  // namespace paratorch
