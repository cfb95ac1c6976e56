// src/formats/safetensors.cpp — safetensors tensors: the writer, and the
// reader on top of the checked header (safetensors_header.cpp).
//
// The writer emits what the reference implementation does — compact JSON
// with "__metadata__" first and keys in the order dtype, shape, data_offsets,
// padded with spaces to a multiple of 8 bytes so the data block is aligned —
// except that tensors are laid out sorted by name, so a file's bytes depend
// only on its contents.
#include "formats/safetensors.h"

#include "formats/atomic_file.h"
#include <paratorch/errors.h>

#include <nlohmann/json.hpp>

#include <cstring>

namespace paratorch::formats {

// Tensor bytes are copied as they lie in memory; safetensors is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors I/O assumes a little-endian host");

namespace {

struct DtypeName {
  torch::ScalarType type;
  const char* name;
};

constexpr DtypeName kDtypeNames[] = {
    {torch::kDouble, "F64"}, {torch::kFloat, "F32"}, {torch::kHalf, "F16"}, {torch::kBFloat16, "BF16"},
    {torch::kLong, "I64"},   {torch::kInt, "I32"},   {torch::kShort, "I16"}, {torch::kChar, "I8"},
    {torch::kByte, "U8"},    {torch::kBool, "BOOL"}};

const char* safetensors_name_of(torch::ScalarType type, const std::string& tensor_name) {
  for (const auto& d : kDtypeNames)
    if (d.type == type) return d.name;
  throw UsageError("paratorch: tensor '" + tensor_name + "' has dtype " + std::string(c10::toString(type)) +
                   ", which safetensors files here cannot hold (supported: " + safetensors_dtype_list() + ")");
}

torch::ScalarType torch_type_of(const std::string& dtype) {
  for (const auto& d : kDtypeNames)
    if (dtype == d.name) return d.type;
  // parse_safetensors_header already refused every other name.
  throw RuntimeFailure("paratorch: internal error: unchecked safetensors dtype " + dtype);
}

/// A string as a JSON string literal; UsageError when it is not UTF-8
/// (JSON cannot carry it, and other readers would refuse the file).
std::string json_string(const std::string& text, const char* role) {
  try {
    return nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
  } catch (const nlohmann::json::exception&) {
    throw UsageError(std::string("paratorch: safetensors ") + role + " '" + text + "' is not valid UTF-8");
  }
}

std::string metadata_json(const std::map<std::string, std::string>& metadata) {
  std::string out = "\"__metadata__\":{";
  bool first = true;
  for (const auto& [key, value] : metadata) {
    out += (first ? "" : ",") + json_string(key, "metadata key") + ":" + json_string(value, "metadata value");
    first = false;
  }
  return out + "}";
}

std::string entry_json(const std::string& name, const char* dtype, const torch::Tensor& t, uint64_t begin,
                       uint64_t end) {
  std::string shape;
  for (int64_t d : t.sizes()) shape += (shape.empty() ? "" : ",") + std::to_string(d);
  return json_string(name, "tensor name") + ":{\"dtype\":\"" + dtype + "\",\"shape\":[" + shape +
         "],\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) + "]}";
}

/// BOOL bytes other than 0 and 1 are not booleans; torch would misbehave on them.
void check_bool_bytes(const uint8_t* data, uint64_t n, const std::string& name, const std::string& what) {
  for (uint64_t i = 0; i < n; ++i)
    if (data[i] > 1)
      throw RuntimeFailure("paratorch: " + what + ": BOOL tensor '" + name + "' holds byte value " +
                           std::to_string(data[i]) + " at element " + std::to_string(i));
}

}  // namespace

const char* safetensors_dtype_of(torch::ScalarType type, const std::string& tensor_name) {
  return safetensors_name_of(type, tensor_name);
}

torch::ScalarType torch_dtype_of(const std::string& dtype) { return torch_type_of(dtype); }

SafetensorsFile parse_safetensors(const uint8_t* bytes, size_t size, const std::string& what) {
  SafetensorsHeader header = parse_safetensors_header(bytes, size, what);
  SafetensorsFile file;
  file.metadata = std::move(header.metadata);
  for (const auto& entry : header.entries) {
    const uint8_t* data = bytes + header.data_start + entry.begin;
    const uint64_t nbytes = entry.end - entry.begin;
    if (entry.dtype == "BOOL") check_bool_bytes(data, nbytes, entry.name, what);
    // A fresh tensor, not a view of `bytes`: the caller may free them.
    torch::Tensor t = torch::empty(entry.shape, torch::TensorOptions().dtype(torch_type_of(entry.dtype)));
    if (nbytes > 0) std::memcpy(t.data_ptr(), data, nbytes);
    file.tensors.emplace(entry.name, std::move(t));
  }
  return file;
}

SafetensorsFile read_safetensors(const std::string& path) {
  const std::string bytes = read_file_bytes(path);
  return parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
}

std::string safetensors_bytes(const std::map<std::string, torch::Tensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  if (!metadata.empty()) header += metadata_json(metadata);
  std::vector<torch::Tensor> cpu_tensors;  // in name order, as the data block
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__")
      throw UsageError("paratorch: a tensor cannot be named '__metadata__' in a safetensors file");
    const char* dtype = safetensors_name_of(tensor.scalar_type(), name);
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    if (header.size() > 1) header += ",";
    header += entry_json(name, dtype, t, offset, offset + nbytes);
    offset += nbytes;
    cpu_tensors.push_back(std::move(t));
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // the data block starts 8-byte aligned

  std::string out;
  out.reserve(8 + header.size() + offset);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((header.size() >> (8 * i)) & 0xff));
  out += header;
  for (const auto& t : cpu_tensors)
    if (t.numel() > 0)
      out.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * t.element_size());
  return out;
}

void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, safetensors_bytes(tensors, metadata));
}

}  // namespace paratorch::formats
