// src/formats/idx_header.cpp — IDX header checks and the capped gzip reader
// (see idx_header.h). No torch here: the fuzzer links this file alone.
#include "formats/idx_header.h"

#include <paratorch/errors.h>

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <limits>

namespace paratorch::formats {

namespace {

[[noreturn]] void fail_idx(const std::string& what, const std::string& problem) {
  throw RuntimeFailure("paratorch: " + what + ": " + problem);
}

/// Bytes per item of an IDX type byte, or 0 for an unknown type.
size_t idx_item_size(uint8_t type) {
  switch (type) {
    case 0x08: case 0x09: return 1;  // u8, i8
    case 0x0B: return 2;             // i16
    case 0x0C: case 0x0D: return 4;  // i32, f32
    case 0x0E: return 8;             // f64
    default: return 0;
  }
}

std::string hex_bytes(const uint8_t* bytes, size_t n) {
  std::string out = "0x";
  char digits[3];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(digits, sizeof(digits), "%02x", bytes[i]);
    out += digits;
  }
  return out;
}

void check_magic(const uint8_t* bytes, size_t size, const std::string& what) {
  if (size < 4)
    fail_idx(what, "file is " + std::to_string(size) + " bytes, shorter than the 4-byte IDX magic");
  if (bytes[0] != 0 || bytes[1] != 0) {
    const bool gzipped = bytes[0] == 0x1f && bytes[1] == 0x8b;
    fail_idx(what, "bad magic " + hex_bytes(bytes, 4) + ": not an IDX file" +
                       (gzipped ? " (it is gzipped: read it with read_idx_gz)" : ""));
  }
  if (idx_item_size(bytes[2]) == 0)
    fail_idx(what, "unknown IDX type byte " + hex_bytes(bytes + 2, 1) +
                       " (valid: 0x08 u8, 0x09 i8, 0x0b i16, 0x0c i32, 0x0d f32, 0x0e f64)");
}

/// Marks the start of the next gzip member, as `gzip -c a b > c` produces.
bool starts_gzip_member(const uint8_t* bytes, size_t n) { return n >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b; }

/// Frees zlib's state on every path out of gunzip.
struct InflateStream {
  z_stream z{};
  ~InflateStream() { inflateEnd(&z); }
};

}  // namespace

IdxHeader parse_idx_header(const uint8_t* bytes, size_t size, const std::string& what) {
  check_magic(bytes, size, what);
  IdxHeader header;
  header.type = bytes[2];
  header.item_size = idx_item_size(header.type);
  const size_t n_dims = bytes[3];
  header.data_offset = 4 + 4 * n_dims;
  if (size < header.data_offset)
    fail_idx(what, "file is " + std::to_string(size) + " bytes, too short for the sizes of its " +
                       std::to_string(n_dims) + " dimensions (truncated?)");
  // Bytes of data, and a bound on torch's strides: zero sizes must not hide
  // huge others.
  uint64_t data_bytes = header.item_size, strides_bound = header.item_size;
  std::string shape;
  for (size_t i = 0; i < n_dims; ++i) {
    const uint8_t* p = bytes + 4 + 4 * i;
    const uint64_t dim = (uint64_t{p[0]} << 24) | (uint64_t{p[1]} << 16) | (uint64_t{p[2]} << 8) | p[3];
    if (__builtin_mul_overflow(data_bytes, dim, &data_bytes) ||
        __builtin_mul_overflow(strides_bound, std::max<uint64_t>(dim, 1), &strides_bound) ||
        strides_bound > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail_idx(what, "dimension sizes overflow 64-bit byte counts at dimension " + std::to_string(i));
    header.dims.push_back(static_cast<int64_t>(dim));
    shape += (shape.empty() ? "" : "x") + std::to_string(dim);
  }
  const uint64_t present = size - header.data_offset;
  if (present < data_bytes)
    fail_idx(what, "has " + std::to_string(present) + " bytes of data but its dimensions [" + shape + "] need " +
                       std::to_string(data_bytes) + " (truncated?)");
  if (present > data_bytes)
    fail_idx(what, "has " + std::to_string(present - data_bytes) + " bytes beyond the " +
                       std::to_string(data_bytes) + " its dimensions [" + shape + "] need");
  return header;
}

std::string gunzip(const std::string& compressed, size_t max_bytes, const std::string& what) {
  InflateStream stream;
  z_stream& z = stream.z;
  if (inflateInit2(&z, 15 + 32) != Z_OK)  // 15: largest window; +32: detect gzip or zlib
    fail_idx(what, "cannot start zlib's inflate");
  const auto* input = reinterpret_cast<const uint8_t*>(compressed.data());
  size_t consumed = 0;  // bytes of `compressed` handed to zlib so far
  std::string out;
  unsigned char chunk[1 << 16];
  for (;;) {
    if (z.avail_in == 0 && consumed < compressed.size()) {
      const size_t give = std::min<size_t>(compressed.size() - consumed, UINT_MAX);
      z.next_in = const_cast<Bytef*>(input + consumed);
      z.avail_in = static_cast<uInt>(give);
      consumed += give;
    }
    z.next_out = chunk;
    z.avail_out = sizeof(chunk);
    const int status = inflate(&z, Z_NO_FLUSH);
    const size_t produced = sizeof(chunk) - z.avail_out;
    if (produced > max_bytes - out.size())
      fail_idx(what, "decompresses to more than " + std::to_string(max_bytes) + " bytes (refused)");
    out.append(reinterpret_cast<const char*>(chunk), produced);
    if (status == Z_STREAM_END) {
      const size_t left = z.avail_in + (compressed.size() - consumed);
      if (left == 0) return out;
      const bool buffered = z.avail_in > 0;  // else the rest is still in `compressed`
      if (!starts_gzip_member(buffered ? z.next_in : input + consumed,
                              buffered ? z.avail_in : compressed.size() - consumed))
        fail_idx(what, std::to_string(left) + " bytes of trailing garbage after the compressed data");
      inflateReset(&z);
    } else if (status == Z_BUF_ERROR) {
      // With a fresh output buffer, no progress means the input ran out early.
      fail_idx(what, "compressed data ends early after " + std::to_string(out.size()) +
                         " decompressed bytes (truncated file?)");
    } else if (status != Z_OK) {
      fail_idx(what, "corrupt compressed data: " +
                         (z.msg ? std::string(z.msg) : "zlib error " + std::to_string(status)));
    }
  }
}

}  // namespace paratorch::formats
