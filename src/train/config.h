// src/train/config.h — the trainer's typed configuration: one TOML file plus
// `--set section.key=value` overrides, checked strictly.
//
// Owns the config schema (every section and key, its type, default and valid
// values), reading it from TOML, writing it back (to_toml, stored beside
// checkpoints) and validating it. The defaults are the documented "Config
// contract"; docs/config.md is the user reference. Every mistake is a
// UsageError (exit code 2) naming the key and what is valid.
//
// Example:
///   auto config = paratorch::train::load_config("examples/configs/gpt_kjv.toml",
///                                               {"optim.lr=1e-3", "parallel.pp=2"});
///   auto model = paratorch::models::make_model(config.model);  // ModelSection is a ModelConfig
#pragma once
#include "models/model.h"
#include "optim/optimizer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace paratorch::train {

/// [model]: models::ModelConfig's keys (make_model(config.model) takes it as is).
///   gpt: n_layers, d_model, n_heads, seq_len, vocab_size
///   mlp: n_layers, d_model, d_in, n_classes
///   cnn: n_layers (residual blocks), d_model (channels), n_classes
///   mf:  n_users, n_items, n_factors
struct ModelSection : models::ModelConfig {
  /// Every size >= 1 (even keys the model ignores, so a typo'd value is caught
  /// now and not when the key starts to matter), then ModelConfig::validate.
  void validate() const;
};

/// [data]
struct DataSection {
  /// kjv | fashion_mnist | synthetic | mf_synthetic | any other string: a text file's path.
  std::string source = "kjv";
  /// Samples per optimizer step for the whole job, the same in every layout.
  int global_batch = 32;
  /// True when `source` names no bundled data set, so it is a text file's path.
  bool is_text_file() const;
  void validate() const;
};

/// [parallel]
struct ParallelSection {
  int dp = 0;  // 0 = auto: world / (pp * tp); written as "auto"
  int pp = 1;
  int tp = 1;
  bool sequence_parallel = false;  // Megatron-3 sequence parallelism (tp > 1)
  int zero = 0;                   // ZeRO stage 0..3
  std::string schedule = "1f1b";  // gpipe | 1f1b | interleaved
  int microbatches = 1;
  int virtual_stages = 1;  // > 1 only with schedule "interleaved"
  std::string partition = "params";     // params | time | cut list "3,5" (pipeline stages)
  bool activation_checkpointing = false;  // pipeline: recompute each stage's forward in backward
  bool zero_release_memory = false;       // ZeRO-3: return freed heap pages after each block
  double bucket_mb = 25.0;
  std::string mode = "sync";  // sync | ps | hogwild
  int servers = 1;            // ps: parameter-server ranks
  int staleness = 0;          // ps: 0 bulk-synchronous, k stale-synchronous, -1 asynchronous
  std::string compression = "none";  // dp gradient exchange: none | bf16 | fp16 | powersgd | onebit_adam
  int powersgd_rank = 1;
  int powersgd_start_step = -1;  // -1: the lr warm-up's length ([optim] warmup_steps)
  int onebit_freeze_step = -1;   // -1: 20% of [train] steps
  void validate() const;
};

/// [optim]
struct OptimSection {
  std::string name = "adamw";  // adamw | sgd
  double lr = 3e-4;
  double weight_decay = 0.1;
  int warmup_steps = 10;
  double grad_clip = 1.0;  // max global gradient norm; 0 = no clipping
  void validate() const;
  /// The optimizer's own options (name and weight_decay): an [optim] section
  /// is accepted wherever the library takes OptimizerOptions.
  operator optim::OptimizerOptions() const;
};

/// [train]
struct TrainSection {
  int steps = 100;
  int64_t seed = 1234;
  int log_every = 10;
  std::string out_dir = "runs/default";
  int checkpoint_every = 0;       // 0 = only the final checkpoint
  int threads_per_rank = 0;       // 0 = this node's cores / its ranks
  std::string precision = "fp32";  // fp32 | bf16 | fp16
  double initial_loss_scale = 65536.0;  // fp16's dynamic loss scale at step 0 (2^16)
  int loss_scale_window = 2000;         // clean fp16 steps in a row before the scale doubles
  std::string reduce_precision = "fp32";  // dtype gradients are reduced in: fp32 | bf16 | fp16
  void validate() const;
};

/// [comm]
struct CommSection {
  std::string backend = "auto";  // auto | mpi (both MPI; "nccl" is refused)
  double timeout_s = 300.0;
  void validate() const;
};

struct Config {
  ModelSection model;
  DataSection data;
  ParallelSection parallel;
  OptimSection optim;
  TrainSection train;
  CommSection comm;
  /// Every section, then the pairings: the data source must suit the model.
  void validate() const;
};

/// Key by key; floating-point values compare exactly.
bool operator==(const Config& a, const Config& b);
bool operator!=(const Config& a, const Config& b);

/// Reads the TOML file at `path`, applies `overrides` (each "section.key=value",
/// the argument of one --set; the value is read as a TOML value, and text that
/// is not one counts as a string), then validates. Throws UsageError.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

/// load_config for TOML text instead of a file.
Config config_from_string(const std::string& toml_text,
                          const std::vector<std::string>& overrides = {});

/// Every key of `config` as a TOML document; config_from_string gives it back.
std::string to_toml(const Config& config);

/// Help text: every section and key with its default and meaning.
std::string config_reference();

/// One key of the schema, for help and documentation checks.
struct ConfigKeyInfo {
  std::string section;        // "optim"
  std::string key;            // "lr"
  std::string type;           // "number", "integer", "string", ...
  std::string default_value;  // as TOML: "0.0003"
  std::string help;
};
/// The schema, section by section, in file order.
std::vector<ConfigKeyInfo> config_keys();

}  // namespace paratorch::train
