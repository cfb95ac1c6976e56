// fuzz/safetensors_fuzz.cpp — libFuzzer target for the safetensors header
// parser: any input must either parse into entries that lie inside the file
// or throw RuntimeFailure; a crash, sanitizer report or other exception is a bug.
#include "formats/safetensors_header.h"

#include <paratorch/errors.h>

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace paratorch::formats;
  try {
    const SafetensorsHeader header = parse_safetensors_header(data, size, "fuzz input");
    // What the torch reader relies on, re-checked independently.
    for (const auto& e : header.entries) {
      if (e.begin > e.end || header.data_start + e.end > size) std::abort();
      uint64_t numel = 1;
      for (int64_t d : e.shape) {
        if (d < 0) std::abort();
        numel *= static_cast<uint64_t>(d);
      }
      if (numel * safetensors_dtype_size(e.dtype) != e.end - e.begin) std::abort();
    }
  } catch (const paratorch::RuntimeFailure&) {
    // Malformed input, reported as such: the expected outcome for most inputs.
  }
  return 0;
}
