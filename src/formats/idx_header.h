// src/formats/idx_header.h — the torch-free half of IDX: the header checker
// and the capped gzip reader (idx.h adds tensors and files).
//
// Kept free of torch so that the libFuzzer target (fuzz/idx_fuzz.cpp) builds
// with clang in seconds and exercises exactly the code readers use.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace paratorch::formats {

struct IdxHeader {
  uint8_t type = 0;            // 0x08 .. 0x0E
  std::vector<int64_t> dims;
  size_t data_offset = 0;      // 4 + 4·d
  size_t item_size = 1;
};

/// Checks the header of a whole IDX file in bytes[0, size) and that exactly
/// product(dims) items follow. Throws RuntimeFailure("paratorch: <what>: <problem>").
IdxHeader parse_idx_header(const uint8_t* bytes, size_t size, const std::string& what);

/// Inflates gzip (or zlib) data, refusing output beyond `max_bytes`.
/// Concatenated gzip members are read as one stream, as gunzip does.
/// Throws RuntimeFailure("paratorch: <what>: ...") on corrupt or truncated input.
std::string gunzip(const std::string& compressed, size_t max_bytes, const std::string& what);

}  // namespace paratorch::formats
