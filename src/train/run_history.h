// src/train/run_history.h — the losses a run has logged, for loss.svg, and
// metrics.jsonl kept consistent across a resume.
//
// A resumed run continues metrics.jsonl from the checkpoint's step: lines
// logged after that step (by the run that crashed or was stopped) are dropped
// because the resumed run logs those steps again, bit for bit the same.
#pragma once
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

  size_t train_points() const { return train_.size(); }

 private:
  std::vector<std::pair<double, double>> train_, validation_;
};

}  // namespace paratorch::train
