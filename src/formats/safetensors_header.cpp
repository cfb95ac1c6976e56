// src/formats/safetensors_header.cpp — the checking safetensors header parser
// (see safetensors_header.h). No torch here: the fuzzer links this file alone.
//
// Every check happens before any tensor byte is touched, and every problem
// becomes a RuntimeFailure naming the file and the offending entry: files come
// from anywhere, so a bad one must never crash or over-allocate.
#include "formats/safetensors_header.h"

#include <paratorch/errors.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <set>

namespace paratorch::formats {

namespace {

using nlohmann::json;

[[noreturn]] void fail_safetensors(const std::string& what, const std::string& problem) {
  throw RuntimeFailure("paratorch: " + what + ": " + problem);
}

/// A name for a message, quoted and shortened (names can be megabytes long).
std::string quote_name(const std::string& name) {
  return "'" + (name.size() > 80 ? name.substr(0, 80) + "..." : name) + "'";
}

/// A JSON value for a message: scalars as written (shortened), containers by kind.
std::string describe_json_value(const json& value) {
  if (!value.is_primitive()) return std::string("a JSON ") + value.type_name();
  std::string text = value.dump();
  return text.size() > 60 ? text.substr(0, 60) + "..." : text;
}

/// The JSON text of a header, parsed, with its top-level keys in file order
/// (nlohmann's object is a sorted map; the order comes from the parse callback).
struct ParsedHeader {
  json root;
  std::vector<std::string> keys_in_order;
};

/// Parses JSON, refusing duplicate keys at any depth: nlohmann would silently
/// keep the last one, and two readers could then disagree about a file.
ParsedHeader parse_json_without_duplicates(const char* text, size_t length, const std::string& what) {
  ParsedHeader out;
  std::vector<std::set<std::string>> open_objects;  // keys seen in each object being parsed
  std::string duplicate;
  auto watch = [&](int depth, json::parse_event_t event, json& parsed) {
    // A header is at most object > entry > shape array > number. Refusing
    // more bounds the work and keeps nothing downstream recursing deeply.
    const bool opens = event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
    if (opens && depth >= 3) fail_safetensors(what, "header nests JSON deeper than a safetensors header does");
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == json::parse_event_t::key && !open_objects.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second && duplicate.empty()) duplicate = key;
      if (depth == 1) out.keys_in_order.push_back(key);
    }
    return true;
  };
  try {
    out.root = json::parse(text, text + length, watch);
  } catch (const json::exception& e) {
    std::string detail = e.what();
    if (detail.size() > 200) detail = detail.substr(0, 200) + "...";
    fail_safetensors(what, "header is not valid JSON: " + detail);
  }
  if (!duplicate.empty()) fail_safetensors(what, "header names key " + quote_name(duplicate) + " twice");
  return out;
}

/// A JSON number that is an integer in [0, INT64_MAX], or nothing.
bool as_size(const json& value, uint64_t* out) {
  if (value.is_number_unsigned()) {
    *out = value.get<uint64_t>();
  } else if (value.is_number_integer()) {
    int64_t v = value.get<int64_t>();
    if (v < 0) return false;
    *out = static_cast<uint64_t>(v);
  } else {
    return false;
  }
  return *out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& what) {
  if (!value.is_object())
    fail_safetensors(what, std::string("__metadata__ is a JSON ") + value.type_name() + ", not an object");
  std::map<std::string, std::string> metadata;
  for (const auto& [key, text] : value.items()) {
    if (!text.is_string())
      fail_safetensors(what, "__metadata__ must map strings to strings; " + quote_name(key) + " holds a JSON " +
                                 text.type_name());
    metadata[key] = text.get<std::string>();
  }
  return metadata;
}

void check_entry_keys(const json& value, const std::string& label, const std::string& what) {
  if (!value.is_object())
    fail_safetensors(what, label + ": entry is a JSON " + value.type_name() + ", not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!value.contains(key)) fail_safetensors(what, label + ": missing key '" + key + "'");
  for (const auto& item : value.items())
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets")
      fail_safetensors(what, label + ": unexpected key " + quote_name(item.key()) +
                                 " (valid keys: dtype, shape, data_offsets)");
}

/// Checks the shape and returns numel * itemsize, refusing overflow. Zero
/// dimensions do not hide huge others: torch computes strides from them.
uint64_t checked_shape(const json& value, size_t item_size, std::vector<int64_t>* shape,
                       const std::string& label, const std::string& what) {
  if (!value.is_array())
    fail_safetensors(what, label + ": shape is a JSON " + value.type_name() + ", not an array");
  uint64_t bytes = item_size, strides_bound = item_size;
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  for (size_t i = 0; i < value.size(); ++i) {
    uint64_t dim = 0;
    if (!as_size(value[i], &dim))
      fail_safetensors(what, label + ": shape[" + std::to_string(i) + "] = " + describe_json_value(value[i]) +
                                 " is not an integer in [0, 2^63)");
    if (__builtin_mul_overflow(bytes, dim, &bytes) ||
        __builtin_mul_overflow(strides_bound, std::max<uint64_t>(dim, 1), &strides_bound) ||
        strides_bound > limit)
      fail_safetensors(what, label + ": shape overflows 64-bit byte counts at shape[" + std::to_string(i) + "]");
    shape->push_back(static_cast<int64_t>(dim));
  }
  return bytes;
}

void check_offsets(const json& value, uint64_t nbytes, uint64_t data_size, SafetensorsEntry* entry,
                   const std::string& label, const std::string& what) {
  if (!value.is_array() || value.size() != 2 || !as_size(value[0], &entry->begin) ||
      !as_size(value[1], &entry->end))
    fail_safetensors(what, label + ": data_offsets is not [begin, end] with integers in [0, 2^63)");
  if (entry->begin > entry->end || entry->end > data_size)
    fail_safetensors(what, label + ": data_offsets [" + std::to_string(entry->begin) + ", " +
                               std::to_string(entry->end) + "] is not a range inside the " +
                               std::to_string(data_size) + "-byte data block");
  if (entry->end - entry->begin != nbytes)
    fail_safetensors(what, label + ": data_offsets cover " + std::to_string(entry->end - entry->begin) +
                               " bytes but dtype " + entry->dtype + " x shape needs " +
                               std::to_string(nbytes));
}

SafetensorsEntry parse_entry(const std::string& name, const json& value, uint64_t data_size,
                             const std::string& what) {
  const std::string label = "tensor " + quote_name(name);
  check_entry_keys(value, label, what);
  SafetensorsEntry entry;
  entry.name = name;
  const json& dtype = value.at("dtype");
  if (!dtype.is_string()) fail_safetensors(what, label + ": dtype " + describe_json_value(dtype) + " is not a string");
  entry.dtype = dtype.get<std::string>();
  const size_t item_size = safetensors_dtype_size(entry.dtype);
  if (item_size == 0)
    fail_safetensors(what, label + ": dtype " + quote_name(entry.dtype) + " is not supported (supported: " +
                               safetensors_dtype_list() + ")");
  const uint64_t nbytes = checked_shape(value.at("shape"), item_size, &entry.shape, label, what);
  check_offsets(value.at("data_offsets"), nbytes, data_size, &entry, label, what);
  return entry;
}

/// Tensors must tile the data block: no byte owned twice, none owned by no
/// one (the reference reader refuses gaps too). Empty tensors own no bytes.
void check_tiling(const std::vector<SafetensorsEntry>& entries, uint64_t data_size, const std::string& what) {
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : entries)
    if (e.end > e.begin) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return a->begin < b->begin; });
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const auto* e : by_offset) {
    if (e->begin < covered)
      fail_safetensors(what, "tensors " + quote_name(previous->name) + " and " + quote_name(e->name) +
                                 " overlap in the data block");
    if (e->begin > covered)
      fail_safetensors(what, "data bytes [" + std::to_string(covered) + ", " + std::to_string(e->begin) +
                                 ") belong to no tensor");
    covered = e->end;
    previous = e;
  }
  if (covered != data_size)
    fail_safetensors(what, "data bytes [" + std::to_string(covered) + ", " + std::to_string(data_size) +
                               ") after the last tensor belong to no tensor");
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U8", 1},   {"BOOL", 1}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

const char* safetensors_dtype_list() { return "F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL"; }

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& what) {
  if (size < 8)
    fail_safetensors(what, "file is " + std::to_string(size) +
                               " bytes, shorter than the 8-byte header length (not a safetensors file?)");
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | bytes[i];  // little-endian
  if (header_length > kMaxSafetensorsHeaderBytes)
    fail_safetensors(what, "header length " + std::to_string(header_length) + " exceeds the " +
                               std::to_string(kMaxSafetensorsHeaderBytes) + "-byte limit (not a safetensors file?)");
  if (header_length > size - 8)
    fail_safetensors(what, "header length " + std::to_string(header_length) + " runs past the end of the " +
                               std::to_string(size) + "-byte file (truncated?)");
  SafetensorsHeader header;
  header.data_start = 8 + header_length;
  const uint64_t data_size = size - header.data_start;

  ParsedHeader parsed = parse_json_without_duplicates(reinterpret_cast<const char*>(bytes + 8),
                                                      static_cast<size_t>(header_length), what);
  if (!parsed.root.is_object())
    fail_safetensors(what, std::string("header is a JSON ") + parsed.root.type_name() + ", not an object");
  for (const auto& name : parsed.keys_in_order) {
    const json& value = parsed.root.at(name);
    if (name == "__metadata__") header.metadata = parse_metadata(value, what);
    else header.entries.push_back(parse_entry(name, value, data_size, what));
  }
  check_tiling(header.entries, data_size, what);
  return header;
}

}  // namespace paratorch::formats
