// src/formats/safetensors.h — the safetensors tensor file format, read and written.
//
// Layout (https://huggingface.co/docs/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets":
// [begin, end]}, ..., "__metadata__": {string: string}}, then the data block;
// offsets are relative to the data block. Files come from anywhere, so the
// parser checks every length, offset, dtype and shape against the file size
// before touching tensor bytes. The parser (parse_safetensors_header, in
// safetensors_header.h) has no torch dependency, so the libFuzzer target
// exercises exactly what readers use.
//
// Example:
///   paratorch::formats::write_safetensors("model.safetensors",
///       {{"transformer.wte.weight", wte}}, {{"format", "pt"}});
///   auto file = paratorch::formats::read_safetensors("model.safetensors");
///   torch::Tensor wte = file.tensors.at("transformer.wte.weight");
#pragma once
#include "formats/safetensors_header.h"  // entries, header, parse_safetensors_header

#include <torch/torch.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace paratorch::formats {

struct SafetensorsFile {
  std::map<std::string, torch::Tensor> tensors;  // CPU, contiguous, owning their memory
  std::map<std::string, std::string> metadata;
};

/// Reads and checks a whole file. Throws RuntimeFailure naming `path`.
SafetensorsFile read_safetensors(const std::string& path);

/// The same, from bytes in memory.
SafetensorsFile parse_safetensors(const uint8_t* bytes, size_t size, const std::string& what);

/// The safetensors dtype name of `type` ("F32", ...); UsageError naming
/// `tensor_name` for a dtype the format cannot hold.
const char* safetensors_dtype_of(torch::ScalarType type, const std::string& tensor_name);
/// The torch dtype of a safetensors dtype name; RuntimeFailure for one the
/// parser would have refused.
torch::ScalarType torch_dtype_of(const std::string& dtype);

/// Serializes tensors (any device; copied to CPU, contiguous) sorted by name.
/// Throws UsageError for a dtype safetensors cannot hold.
std::string safetensors_bytes(const std::map<std::string, torch::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

/// safetensors_bytes written with write_file_atomic.
void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace paratorch::formats
