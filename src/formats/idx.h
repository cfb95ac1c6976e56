// src/formats/idx.h — the IDX array format of MNIST / Fashion-MNIST, gzipped.
//
// IDX: two zero bytes, a type byte (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32,
// 0x0D f32, 0x0E f64), a dimension count d, d big-endian u32 sizes, then the
// values big-endian. Files come from anywhere: the parser checks the magic,
// type, the product of sizes (overflow) against the bytes present, and the
// gzip reader caps the decompressed size. The checks (idx_header.h) have no
// torch dependency, so the libFuzzer target exercises exactly what readers use.
//
// Example:
///   auto images = paratorch::formats::read_idx_gz(
///       "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");  // uint8 [60000, 28, 28]
#pragma once
#include "formats/idx_header.h"  // IdxHeader, parse_idx_header, gunzip

#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace paratorch::formats {

/// An IDX array as a tensor (u8 → kByte, i8 → kChar, i16 → kShort, i32 → kInt,
/// f32 → kFloat, f64 → kDouble), values converted from big-endian.
torch::Tensor parse_idx(const uint8_t* bytes, size_t size, const std::string& what);

/// Reads a gzipped IDX file. Throws RuntimeFailure naming `path` (and the
/// Debian package to install when the file is missing under /usr/share/datasets).
torch::Tensor read_idx_gz(const std::string& path);

}  // namespace paratorch::formats
