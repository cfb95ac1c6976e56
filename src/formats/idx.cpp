// src/formats/idx.cpp — IDX arrays as tensors, and gzipped IDX files (see
// idx.h); the byte-level checks live in idx_header.cpp.
#include "formats/idx.h"

#include "formats/atomic_file.h"
#include <paratorch/errors.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace paratorch::formats {

namespace {

/// Largest decompressed IDX file read_idx_gz accepts (Fashion-MNIST's
/// largest is 47 MB); a corrupt or hostile file cannot exhaust memory.
constexpr size_t kMaxIdxBytes = size_t{1} << 30;

torch::ScalarType idx_torch_type(uint8_t type) {
  switch (type) {
    case 0x08: return torch::kByte;
    case 0x09: return torch::kChar;
    case 0x0B: return torch::kShort;
    case 0x0C: return torch::kInt;
    case 0x0D: return torch::kFloat;
    default: return torch::kDouble;  // 0x0E; parse_idx_header refused the rest
  }
}

/// Big-endian items to host order, in place.
void swap_items_to_host(uint8_t* data, size_t count, size_t item_size) {
  if (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ || item_size == 1) return;
  for (size_t i = 0; i < count; ++i, data += item_size)
    for (size_t lo = 0, hi = item_size - 1; lo < hi; ++lo, --hi) std::swap(data[lo], data[hi]);
}

/// For a missing file under /usr/share/datasets/NAME/, Debian's package
/// dataset-NAME ships it; say so instead of just "No such file".
void explain_missing_dataset_file(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0 || errno != ENOENT) return;
  const std::string root = "/usr/share/datasets/";
  if (path.compare(0, root.size(), root) != 0) return;
  const std::string name = path.substr(root.size(), path.find('/', root.size()) - root.size());
  throw RuntimeFailure("paratorch: " + path + " is missing; install Debian package dataset-" + name +
                       " (scripts/bootstrap does)");
}

}  // namespace

torch::Tensor parse_idx(const uint8_t* bytes, size_t size, const std::string& what) {
  const IdxHeader header = parse_idx_header(bytes, size, what);
  torch::Tensor t = torch::empty(header.dims, torch::TensorOptions().dtype(idx_torch_type(header.type)));
  const size_t nbytes = size - header.data_offset;  // exactly numel * item_size, checked
  if (nbytes == 0) return t;
  std::memcpy(t.data_ptr(), bytes + header.data_offset, nbytes);
  swap_items_to_host(static_cast<uint8_t*>(t.data_ptr()), nbytes / header.item_size, header.item_size);
  return t;
}

torch::Tensor read_idx_gz(const std::string& path) {
  explain_missing_dataset_file(path);
  const std::string raw = gunzip(read_file_bytes(path), kMaxIdxBytes, path);
  return parse_idx(reinterpret_cast<const uint8_t*>(raw.data()), raw.size(), path);
}

}  // namespace paratorch::formats
