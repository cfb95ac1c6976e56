// fuzz/idx_fuzz.cpp — libFuzzer target for the IDX header checks and the
// capped gzip reader: each input is tried as a raw IDX file and as gzip data
// whose output is then checked as IDX. Anything but success or
// RuntimeFailure (a crash, a sanitizer report, another exception) is a bug.
#include "formats/idx_header.h"

#include <paratorch/errors.h>

#include <cstdlib>

namespace {

constexpr size_t kFuzzOutputCap = 1 << 20;  // small, so zip bombs end quickly

void check_idx(const uint8_t* data, size_t size) {
  const auto header = paratorch::formats::parse_idx_header(data, size, "fuzz input");
  // What parse_idx relies on, re-checked independently.
  uint64_t items = 1;
  for (int64_t d : header.dims) items *= static_cast<uint64_t>(d);
  if (header.data_offset > size || items * header.item_size != size - header.data_offset) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    check_idx(data, size);
  } catch (const paratorch::RuntimeFailure&) {
  }
  try {
    const std::string raw = paratorch::formats::gunzip(std::string(reinterpret_cast<const char*>(data), size),
                                                       kFuzzOutputCap, "fuzz input");
    if (raw.size() > kFuzzOutputCap) std::abort();
    check_idx(reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  } catch (const paratorch::RuntimeFailure&) {
  }
  return 0;
}
