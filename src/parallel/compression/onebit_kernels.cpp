// src/parallel/compression/onebit_kernels.cpp — see onebit_kernels.h.
#include "parallel/compression/onebit_kernels.h"

#include <array>
#include <cmath>

namespace paratorch::compression {

double add_and_mean_abs(float* b, const float* x, int64_t nx, int64_t n) {
  for (int64_t i = 0; i < nx; ++i) b[i] += x[i];
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::fabs(b[i]);
  return n > 0 ? sum / static_cast<double>(n) : 0.0;
}

void pack_signs_keep_error(float* b, int64_t n, float scale, uint8_t* packed) {
  for (int64_t byte = 0; byte < n / 8; ++byte) {
    unsigned bits = 0;
    float* v = b + 8 * byte;
    for (int k = 0; k < 8; ++k) bits |= static_cast<unsigned>(v[k] >= 0.0f) << k;
    for (int k = 0; k < 8; ++k) v[k] -= v[k] >= 0.0f ? scale : -scale;
    packed[byte] = static_cast<uint8_t>(bits);
  }
}

namespace {
// The eight ±1 values of every byte: unpacking is then a scaled copy of a
// table row, which vectorises, instead of eight bit tests.
const std::array<std::array<float, 8>, 256>& sign_table() {
  static const auto table = [] {
    std::array<std::array<float, 8>, 256> t{};
    for (int byte = 0; byte < 256; ++byte)
      for (int k = 0; k < 8; ++k) t[byte][k] = (byte >> k) & 1 ? 1.0f : -1.0f;
    return t;
  }();
  return table;
}
}  // namespace

void scaled_signs(const uint8_t* packed, int64_t n, float scale, float* out, bool accumulate) {
  const auto& table = sign_table();
  for (int64_t byte = 0; byte < n / 8; ++byte) {
    const float* row = table[packed[byte]].data();
    float* o = out + 8 * byte;
    if (accumulate)
      for (int k = 0; k < 8; ++k) o[k] += scale * row[k];
    else
      for (int k = 0; k < 8; ++k) o[k] = scale * row[k];
  }
}

void momentum_update(float* m, const float* g, int64_t n, float beta, float c) {
  for (int64_t i = 0; i < n; ++i) m[i] = beta * m[i] + c * g[i];
}

void frozen_adam_update(float* p, const float* m, const float* denom, int64_t n, float decay, float step) {
  for (int64_t i = 0; i < n; ++i) p[i] = p[i] * decay - step * m[i] / denom[i];
}

}  // namespace paratorch::compression
