// src/train/run_history.h — the losses a run has logged, for loss.svg, and
// metrics.jsonl kept consistent across a resume; and the validation fields
// of a metrics line. Every training loop reports through these (the
// Trainer's, and the asynchronous runners beside it: ps_trainer, hogwild_runner).
//
// A resumed run continues metrics.jsonl from the checkpoint's step: lines
// logged after that step (by the run that crashed or was stopped) are dropped
// because the resumed run logs those steps again, bit for bit the same.
#pragma once
#include "report/metrics.h"
#include "train/config.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace paratorch::train {

class RunHistory {
 public:
  void add_train(int64_t step, double loss) { train_.emplace_back(static_cast<double>(step), loss); }
  void add_validation(int64_t step, double loss) { validation_.emplace_back(static_cast<double>(step), loss); }

  /// Reads metrics.jsonl at `path`, keeps the lines with step <= `last_step`,
  /// rewrites the file with just those and remembers their losses. A missing
  /// file is an empty history.
  void resume_from(const std::string& path, int64_t last_step);

  /// loss.svg: training and validation loss against step, labelled axes.
  /// `baseline` > 0 adds a grey reference line (the unigram entropy for text).
  std::string loss_svg(const std::string& title, const std::string& loss_name, double baseline) const;
  /// Writes loss.svg into config's out_dir, titled "<model> on <source><suffix>",
  /// its y axis named by the model family's loss.
  void write_loss_svg(const Config& config, double baseline, const std::string& suffix = "") const;

  size_t train_points() const { return train_.size(); }

 private:
  std::vector<std::pair<double, double>> train_, validation_;
};

/// Sets `m`'s val_loss to `loss` and the model family's own measure
/// (val_perplexity, val_accuracy, val_rmse: docs/config.md) where it has one;
/// `accuracy` -1 when not measured.
void add_validation_fields(report::StepMetrics& m, const std::string& model, double loss, double accuracy);

}  // namespace paratorch::train
