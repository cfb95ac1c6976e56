// paratorch/pipeline.h — pipeline and model parallelism for a user's own
// torch::nn::Sequential (or an ordered list of named blocks), the C++
// counterpart of torch.distributed.pipelining / DeepSpeed's PipelineModule.
//
// The children are cut into contiguous stages, one per rank of the pp group
// (v per rank with the interleaved schedule, 2 in zb-v's V); each rank keeps
// only its stage's parameters. step() splits the batch into micro-batches and
// runs GPipe, 1F1B, interleaved 1F1B or a zero-bubble schedule (backward
// split into input and weight passes) over them; afterwards this rank's
// parameters hold the gradients of the batch's mean loss, so the user's own
// optimizer over pipeline.parameters() steps as it would in one process.
// microbatches = 1 is naive model parallelism (one stage busy at a time).
//
// Example (PyTorch's model-parallel tutorial, `seq1` on rank 0, `seq2` on 1):
///   paratorch::World world(argc, argv);
///   torch::manual_seed(0);  // same full model on every rank
///   torch::nn::Sequential net({{"seq1", torch::nn::Sequential(...)}, {"seq2", torch::nn::Sequential(...)}});
///   paratorch::PipelineOptions o;
///   o.microbatches = 4;
///   o.schedule = paratorch::PipelineSchedule::kOneFOneB;
///   o.partition = paratorch::PartitionBy::kSplitPoints;
///   o.split_points = {"seq2"};
///   paratorch::Pipeline pipe(net, world.comm(), /*example_input=*/x.narrow(0, 0, 1), o);
///   torch::optim::SGD opt(pipe.parameters(), 0.1);  // this rank's stage only
///   opt.zero_grad();
///   double loss = pipe.step(x, y, [](const torch::Tensor& out, const torch::Tensor& t) {
///     return torch::mse_loss(out, t); });          // the batch's mean loss, on every rank
///   opt.step();
#pragma once
#include <paratorch/communicator.h>

#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace paratorch {

/// The order of forwards and backwards over the micro-batches.
enum class PipelineSchedule {
  kGPipe,        ///< all forwards, then all backwards (Huang et al., 2019)
  kOneFOneB,     ///< PipeDream-Flush: at most pp - rank micro-batches in flight (Narayanan et al., 2021)
  kInterleaved,  ///< Megatron-LM's interleaved 1F1B: virtual_stages chunks per rank (Narayanan et al., SC'21)
  /// Zero bubble ZB-H1 (Qi et al., 2023): backward split into input and
  /// weight passes, the weight passes filling 1F1B's cool-down; 1F1B's peak
  /// memory, a third of its bubble. Needs microbatches >= the pp size.
  kZeroBubbleH1,
  /// Zero bubble ZB-V: two chunks per rank in a V (rank 0 holds the first and
  /// last stage); leaves only the start-up skew idle. virtual_stages is 2
  /// (leave it at 1 or set 2). Needs microbatches >= the pp size.
  kZeroBubbleV,
};

/// How the children are cut into stages (contiguous runs, at least one child each).
enum class PartitionBy {
  kParameters,   ///< balance the parameter count per stage (memory)
  kTime,         ///< balance forward+backward time, measured on pp rank 0 and broadcast
  kSplitPoints,  ///< at the children named in PipelineOptions::split_points
};

struct PipelineOptions {
  /// Pieces of each batch; must divide the batch. 1 = naive model parallelism.
  int microbatches = 1;
  PipelineSchedule schedule = PipelineSchedule::kOneFOneB;
  /// Model chunks per rank (kInterleaved only; then microbatches must be a multiple of the pp size).
  int virtual_stages = 1;
  PartitionBy partition = PartitionBy::kParameters;
  /// kSplitPoints: the first child of stages 1, 2, ... by name (e.g. {"seq2"}).
  std::vector<std::string> split_points;
  /// Recompute each stage's forward during its backward (Chen et al., 2016):
  /// keeps one boundary activation per micro-batch in flight.
  bool activation_checkpointing = false;
  /// Groups of parameter names (as in named_parameters()) that are one weight
  /// used by several stages, e.g. {{"embed.weight", "head.weight"}}. Each
  /// holder keeps a copy, started from the first name's value; after step()
  /// every copy holds the summed gradient, so all copies step alike.
  std::vector<std::vector<std::string>> tied;
  /// Where this rank's stage computes (inputs and targets are moved there).
  torch::Device device = torch::kCPU;
  /// Checks what needs no model; UsageError names the field.
  void validate() const;
};

/// One named piece of a model in forward order: its parameters are those of
/// `module` (named "<name>.<parameter>"), its computation is `forward`.
struct PipelineBlock {
  /// A module run through its own forward (a Sequential child, for instance).
  PipelineBlock(std::string name, torch::nn::AnyModule module);
  /// Any computation over `module`'s parameters (e.g. `relu(net1(x))`).
  PipelineBlock(std::string name, std::shared_ptr<torch::nn::Module> module,
                std::function<torch::Tensor(const torch::Tensor&)> forward);
  std::string name;
  std::shared_ptr<torch::nn::Module> module;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
};

/// The children of `sequential`, in order, as blocks named by child name.
std::vector<PipelineBlock> blocks_of(const torch::nn::Sequential& sequential);

/// Loss of a micro-batch: the MEAN over its samples (PyTorch's default
/// reduction), so the mean over equal micro-batches is the batch's mean.
using PipelineLoss = std::function<torch::Tensor(const torch::Tensor& output, const torch::Tensor& target)>;

class PipelineRunner;

class Pipeline {
 public:
  /// Collective over `pp` (its size = stages, its rank = this rank's stage).
  /// Every rank passes the same full model (same initial values: layout
  /// invariance) and an `example_input` of one micro-batch (any batch size)
  /// from which the activation shapes at the cuts are found — and, for
  /// PartitionBy::kTime, the blocks timed. Parameters of other ranks'
  /// stages are freed in the given modules.
  Pipeline(std::vector<PipelineBlock> blocks, std::shared_ptr<Communicator> pp, torch::Tensor example_input,
           PipelineOptions options = {});
  Pipeline(const torch::nn::Sequential& sequential, std::shared_ptr<Communicator> pp, torch::Tensor example_input,
           PipelineOptions options = {});
  ~Pipeline();

  /// One forward+backward of (input, target) in options.microbatches pieces,
  /// with the chosen schedule. Collective; every rank passes the same batch
  /// (the first stage reads input, the last stage target). Returns the
  /// batch's mean loss on every rank. Gradients ADD to .grad, as backward()
  /// does: zero them first (optimizer.zero_grad()).
  double step(const torch::Tensor& input, const torch::Tensor& target, const PipelineLoss& loss_fn);

  /// Evaluation: the whole batch as one micro-batch, without autograd.
  /// Collective; returns the model's output on EVERY rank (computed on the
  /// last stage and broadcast over the pp group), on options.device.
  torch::Tensor forward(const torch::Tensor& input);

  /// This rank's parameters (its stage's, tied copies included) — what its optimizer steps.
  std::vector<torch::Tensor> parameters() const;
  /// The same by full name.
  std::map<std::string, torch::Tensor> named_parameters() const;
  /// Clips this rank's gradients by the whole model's gradient norm, the
  /// stages' squares summed over the pp group and each tied weight counted
  /// once (torch.nn.utils.clip_grad_norm_ as one process would apply it;
  /// paratorch/grad_clip.h). With tensor-parallel layers in the blocks, pass
  /// their `tp_group`: their slices are summed over it, replicated
  /// parameters counted once. Call it after step(), before the optimizer's
  /// step; gradients all-reduced over dp replicas need no group. Returns the
  /// norm before clipping. Collective. UsageError unless max_norm > 0.
  double clip_grad_norm(double max_norm, std::shared_ptr<Communicator> tp_group = nullptr);
  /// Names of this rank's parameters whose gradient a norm must not count
  /// here: copies of a tied weight (PipelineOptions::tied) that the holder
  /// of the group's first name counts. For ZeroRedundancyOptimizerOptions::
  /// clip_tied_copies when ZeRO runs inside the stages.
  std::vector<std::string> tied_copies() const;
  /// Called right before each backward pass of this rank (each weight pass
  /// under the zero-bubble schedules) with `last` = whether it is this
  /// rank's final one of the step. A data-parallel wrapper of this rank's
  /// parameters then reduces once per step, during its last backward,
  /// instead of after every micro-batch (PyTorch's pipelining runs all but
  /// the last backward under DDP's no_sync):
  ///   pipe.set_gradient_sync([&opt](bool last) { opt.set_requires_gradient_sync(last); });
  /// Gradients still add up as without it. An empty function removes it.
  void set_gradient_sync(std::function<void(bool last)> sync);
  /// Every parameter of the whole model as a full CPU tensor under its name,
  /// on every rank (collective: each is broadcast from its stage). For
  /// check_equivalence and checkpoints.
  std::map<std::string, torch::Tensor> full_parameters();

  /// Which block indices each model stage holds: stage s runs
  /// blocks [stage_starts()[s], stage_starts()[s+1]).
  const std::vector<int>& stage_starts() const;
  /// Names of the blocks this rank runs, in order.
  std::vector<std::string> local_block_names() const;
  /// "stage 0: seq1 (370 params) | stage 1: seq2 (...)" — the cut, for logs.
  std::string describe() const;

 private:
  std::unique_ptr<PipelineRunner> runner_;
};

/// In-process model parallelism: consecutive blocks placed on local devices
/// (PyTorch's `self.net1.to('cuda:0')`, `self.net2.to('cuda:1')`), the
/// activation moved from device to device. One device works at a time; it
/// buys memory, not speed.
struct DevicePlacementOptions {
  PartitionBy partition = PartitionBy::kParameters;  ///< kParameters or kSplitPoints
  std::vector<std::string> split_points;             ///< first block on devices[1], devices[2], ...
  void validate() const;
};

class PlacedModel {
 public:
  /// Moves each block's parameters to its device; UsageError when there
  /// are more devices than blocks or a split point names no block.
  PlacedModel(std::vector<PipelineBlock> blocks, std::vector<torch::Device> devices,
              DevicePlacementOptions options = {});
  ~PlacedModel();
  /// The model's forward; the output lies on the last block's device.
  torch::Tensor forward(const torch::Tensor& input);
  /// The device block `name` runs on.
  torch::Device device_of(const std::string& name) const;
  std::vector<torch::Tensor> parameters() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace paratorch
