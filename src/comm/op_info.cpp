// src/comm/op_info.cpp — formatting of OpInfo for error messages.
#include "comm/op_info.h"

#include <sstream>

namespace paratorch::comm {

std::string OpInfo::describe() const {
  std::ostringstream s;
  s << op << " #" << sequence << " on group '" << group << "' [world ranks ";
  for (size_t i = 0; i < group_world_ranks.size(); ++i) s << (i ? "," : "") << group_world_ranks[i];
  s << "] (group rank " << group_rank << " of " << group_size << ")";
  if (!dtype.empty()) {
    s << ", " << dtype << "[";
    for (size_t i = 0; i < shape.size(); ++i) s << (i ? "," : "") << shape[i];
    s << "] (" << bytes << " bytes)";
  }
  if (peer >= 0) s << ", peer group rank " << peer;
  return s.str();
}

std::string dtype_name(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat: return "float32";
    case torch::kDouble: return "float64";
    case torch::kHalf: return "float16";
    case torch::kBFloat16: return "bfloat16";
    case torch::kInt: return "int32";
    case torch::kLong: return "int64";
    case torch::kShort: return "int16";
    case torch::kChar: return "int8";
    case torch::kByte: return "uint8";
    case torch::kBool: return "bool";
    default: return c10::toString(type);
  }
}

uint64_t group_key_of(const std::string& group, const std::vector<int>& world_ranks) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a
  auto mix = [&h](uint64_t byte) { h = (h ^ byte) * 1099511628211ull; };
  for (unsigned char c : group) mix(c);
  mix(0xff);
  for (int r : world_ranks)
    for (int shift = 0; shift < 32; shift += 8) mix((static_cast<uint32_t>(r) >> shift) & 0xff);
  return h;
}

OpInfo make_op_info(const std::string& op, const torch::Tensor& tensor) {
  OpInfo info;
  info.op = op;
  if (tensor.defined()) {
    info.dtype = dtype_name(tensor.scalar_type());
    info.shape = tensor.sizes().vec();
    info.bytes = static_cast<int64_t>(tensor.numel()) * static_cast<int64_t>(tensor.element_size());
  }
  return info;
}

}  // namespace paratorch::comm
