// bench/checkpoint.cpp — sharded checkpoints against gather-then-write.
//
//   mpirun -np N bench_checkpoint [LAYERS]   (bench/checkpoint_compare runs N = 1, 2, 4)
// Model: gpt LAYERS (default 4) x d_model 1024 (16 heads, seq 32, vocab 256):
// 4 layers are 50.6M parameters, 202 MB of fp32 weights and 405 MB of AdamW
// state; ZeRO-1 over dp = N, so the optimizer state is sharded as a large
// run's would be. After one training step, BENCH_ROUNDS (default 3) rounds,
// each timing both ways in turn:
//  - sharded: Engine::checkpoint_pieces, then write_sharded_checkpoint (every
//    rank writes its own file; checkpoint/sharded_folder.h);
//  - gathered: the whole tensors gathered to every rank (full_parameters,
//    full_optimizer_state), then rank 0 writes them (checkpoints::write_checkpoint:
//    the single-file format, which paratorch wrote before sharding);
// and the loads of each into the same engine (every rank reads what it
// needs: read_checkpoint with the engine's filter; the single-file format
// is read whole by every rank). Prints the medians, their ratios, rank 0's
// peak resident memory above its resident memory before the save (Linux's
// VmHWM, reset through /proc/self/clear_refs), and the bytes each wrote
// against the model + optimizer state.
#include "data/dataset.h"
#include "parallel/engine.h"
#include "checkpoint/sharded_folder.h"
#include "train/engine_factory.h"
#include <paratorch/sampler.h>
#include <paratorch/world.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

using namespace paratorch;
namespace fs = std::filesystem;

namespace {

double status_mib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::atof(line.c_str() + std::strlen(field)) / 1024.0;
  return 0;
}

// Resets VmHWM to the current RSS (Linux >= 4.0); returns the RSS.
double reset_peak() {
  std::ofstream("/proc/self/clear_refs") << "5";
  return status_mib("VmRSS:");
}

uint64_t folder_bytes(const fs::path& dir) {
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Timed {
  std::vector<double> save_ms, load_ms, peak_mib;
};

}  // namespace

PARATORCH_NAP_IDLE_COMPUTE_THREADS();

int main(int argc, char** argv) {
  World world(argc, argv);
  const int layers = argc > 1 ? std::atoi(argv[1]) : 4;
  const int rounds = std::getenv("BENCH_ROUNDS") ? std::atoi(std::getenv("BENCH_ROUNDS")) : 3;
  const std::string root = std::getenv("BENCH_CKPT_DIR") ? std::getenv("BENCH_CKPT_DIR") : "bench/out/checkpoint";
  train::Config c;
  c.model.name = "gpt";
  c.model.n_layers = layers;
  c.model.d_model = 1024;
  c.model.n_heads = 16;
  c.model.seq_len = 32;
  c.data.source = "synthetic";
  c.data.global_batch = 8;
  c.parallel.zero = world.size() > 1 ? 1 : 0;
  c.optim.name = "adamw";
  c.validate();
  const Layout layout = Layout{world.size(), 1, 1}.resolve(world.size());
  ProcessGroups groups(world.comm(), layout);
  auto dataset = data::make_dataset(c.data.source, c.model, 1);
  auto engine = train::make_engine(c, groups, models::make_model(c.model), *dataset, world.device());
  auto optimizer = engine->build_optimizer(c.optim);
  DistributedSampler batches(c.data.global_batch, 0, 1);
  optim::zero_gradients(engine->named_parameters());
  engine->forward_backward(parallel::local_microbatches(*engine, *dataset, batches.global_indices(0)));
  optimizer->step(1e-4);

  const std::string sharded_root = root + "/sharded-np" + std::to_string(world.size());
  const std::string gathered_root = root + "/gathered-np" + std::to_string(world.size());
  const formats::ShardPlan wanted = engine->parameters_to_load();
  auto timed = [&](const std::function<void()>& f, Timed* into, bool save) {
    world.comm()->barrier();
    const double before = reset_peak();
    const auto t0 = std::chrono::steady_clock::now();
    f();
    world.comm()->barrier();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    (save ? into->save_ms : into->load_ms).push_back(ms);
    if (save) into->peak_mib.push_back(status_mib("VmHWM:") - before);
  };
  auto load = [&](const std::string& dir, const formats::ShardPlan& plan) {
    checkpoints::Checkpoint back = checkpoints::read_checkpoint(dir, plan);
    engine->load_full_parameters(back.model);
    optimizer->load_state_tensors(back.optimizer);
  };
  Timed sharded, gathered;
  for (int r = 0; r < rounds; ++r) {
    timed([&] {
      auto pieces = engine->checkpoint_pieces(*optimizer);
      checkpoints::write_sharded_checkpoint(
          sharded_root, *pieces, {1 + r, "dp=" + std::to_string(layout.dp) + ",pp=1,tp=1", ""}, *world.comm());
    }, &sharded, true);
    timed(
        [&] {
          checkpoints::Checkpoint ckpt;
          ckpt.step = 1 + r;
          ckpt.model = engine->full_parameters();
          ckpt.optimizer = engine->full_optimizer_state(optimizer->state_tensors());
          if (world.rank() == 0) checkpoints::write_checkpoint(gathered_root, ckpt);
        },
        &gathered, true);
    timed([&] { load(sharded_root, wanted); }, &sharded, false);
    timed([&] { load(gathered_root, {}); }, &gathered, false);
  }
  if (world.rank() == 0) {
    const double mb = 1e6;
    const double params_mb = engine->parameter_count() * 4.0 / mb;
    const double state_mb = params_mb * 3.0;  // fp32 weights + AdamW's exp_avg and exp_avg_sq
    const double bytes_sharded = folder_bytes(checkpoints::resolve_step_folder(sharded_root)) / mb;
    const double bytes_gathered = folder_bytes(checkpoints::resolve_step_folder(gathered_root)) / mb;
    std::printf("checkpoint: ranks=%d layers=%d params_MB=%.0f model+optimizer_MB=%.0f "
                "save_ms sharded=%.0f gathered=%.0f speedup=%.2f "
                "load_ms sharded=%.0f gathered=%.0f speedup=%.2f "
                "rank0_peak_MiB sharded=%.0f gathered=%.0f "
                "written_MB sharded=%.1f gathered=%.1f\n",
                world.size(), layers, params_mb, state_mb, median(sharded.save_ms), median(gathered.save_ms),
                median(gathered.save_ms) / median(sharded.save_ms), median(sharded.load_ms), median(gathered.load_ms),
                median(gathered.load_ms) / median(sharded.load_ms), median(sharded.peak_mib), median(gathered.peak_mib),
                bytes_sharded, bytes_gathered);
  }
  return 0;
}
