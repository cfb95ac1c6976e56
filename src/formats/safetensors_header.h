// src/formats/safetensors_header.h — the torch-free half of safetensors: the
// header's types and its checking parser (safetensors.h adds the tensors).
//
// Kept free of torch so that the libFuzzer target (fuzz/safetensors_fuzz.cpp)
// builds with clang in seconds and exercises exactly the code readers use.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace paratorch::formats {

/// One tensor's entry in the header, already checked against the file.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // "F32", "F64", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"
  std::vector<int64_t> shape;  // each >= 0
  uint64_t begin = 0;          // byte range in the data block, end - begin == numel * itemsize
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;      // in file order
  std::map<std::string, std::string> metadata;  // "__metadata__"
  uint64_t data_start = 0;                    // 8 + N: where the data block begins in the file
};

/// Largest JSON header accepted (the reference implementation's limit too).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

/// Bytes per element of a safetensors dtype name, or 0 for a name paratorch
/// does not support.
size_t safetensors_dtype_size(const std::string& dtype);

/// The supported dtype names, comma-separated, for messages.
const char* safetensors_dtype_list();

/// Parses and checks the header of a whole file held in `bytes[0, size)`.
/// Throws RuntimeFailure("paratorch: <what>: <problem>") for anything
/// malformed: short file, header length beyond the file, bad JSON, unknown
/// dtype, negative or overflowing shape, offsets out of the data block,
/// overlapping tensors or bytes no tensor owns, size not matching dtype ×
/// shape, duplicate names. `what` names the file in messages.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& what);

}  // namespace paratorch::formats
