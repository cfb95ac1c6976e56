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
#pragma once
#include <paratorch/communicator.h>

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace paratorch {

struct DDPOptions {
  /// Bucket capacity in MiB (PyTorch's bucket_cap_mb).
  double bucket_mb = 25.0;
  /// Parameters that get no gradient in a backward pass are reduced with
  /// their current (usually zero) gradient instead of raising an error.
  bool find_unused_parameters = false;
  /// Broadcast buffers (e.g. running statistics) from rank 0 at construction.
  bool broadcast_buffers = true;
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
/// starting a new bucket whenever the dtype or device changes.
std::vector<BucketLayout> plan_buckets(const std::vector<torch::Tensor>& params, int64_t cap_bytes);

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

 private:
  std::shared_ptr<torch::nn::Module> module_;
  std::shared_ptr<Communicator> comm_;
  std::shared_ptr<Reducer> reducer_;
};

}  // namespace paratorch
