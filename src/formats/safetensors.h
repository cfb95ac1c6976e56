// src/formats/safetensors.h — the safetensors tensor file format, read and written.
//
// Layout (https://huggingface.co/docs/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets":
// [begin, end]}, ..., "__metadata__": {string: string}}, then the data block;
// offsets are relative to the data block. Files come from anywhere, so the
// parser checks every length, offset, dtype and shape against the file size
// before touching tensor bytes. The parser (parse_safetensors_header) has no
// torch dependency, so the libFuzzer target exercises exactly what readers use.
//
// Example:
///   paratorch::formats::write_safetensors("model.safetensors",
///       {{"transformer.wte.weight", wte}}, {{"format", "pt"}});
///   auto file = paratorch::formats::read_safetensors("model.safetensors");
///   torch::Tensor wte = file.tensors.at("transformer.wte.weight");
#pragma once
#include <torch/torch.h>

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

/// Parses and checks the header of a whole file held in `bytes[0, size)`.
/// Throws RuntimeFailure("<what>: <problem>") for anything malformed: short
/// file, header length beyond the file, bad JSON, unknown dtype, negative or
/// overflowing shape, offsets out of the data block, overlapping tensors, size
/// not matching dtype × shape, duplicate names. `what` names the file in messages.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& what);

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;  // CPU, contiguous, owning their memory
  std::map<std::string, std::string> metadata;
};

/// Reads and checks a whole file. Throws RuntimeFailure naming `path`.
SafetensorsFile read_safetensors(const std::string& path);

/// The same, from bytes in memory.
SafetensorsFile parse_safetensors(const uint8_t* bytes, size_t size, const std::string& what);

/// Serializes tensors (any device; copied to CPU, contiguous) sorted by name.
/// Throws UsageError for a dtype safetensors cannot hold.
std::string safetensors_bytes(const std::map<std::string, torch::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

/// safetensors_bytes written with write_file_atomic.
void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace paratorch::formats
