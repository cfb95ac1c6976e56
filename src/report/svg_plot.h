// src/report/svg_plot.h — small self-contained SVG line charts (loss.svg).
//
// No plotting dependency: a chart is a few series of (x, y) points drawn as
// polylines over labelled axes with "nice" tick values (1, 2, 5 x 10^k).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace paratorch::report {

struct Series {
  std::string label;
  std::string color;  // any SVG colour
  std::vector<std::pair<double, double>> points;
};

struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  int width = 720, height = 420;
  /// The whole SVG document.
  std::string to_svg() const;
};

/// Tick values covering [lo, hi] with about `target` steps of 1, 2 or 5 x 10^k.
std::vector<double> nice_ticks(double lo, double hi, int target);

/// Writes `svg` to `path` (throws RuntimeFailure naming the path on error).
void write_text_file(const std::string& path, const std::string& text);

}  // namespace paratorch::report
