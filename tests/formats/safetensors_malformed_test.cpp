// tests/formats/safetensors_malformed_test.cpp — every kind of bad safetensors
// file is refused with a RuntimeFailure that names the file and the problem,
// and no prefix of a good file crashes the reader.
#include <gtest/gtest.h>

#include "formats/safetensors.h"
#include <paratorch/errors.h>

using namespace paratorch::formats;

namespace {

/// A file with this header text (no padding needed) and data block.
std::string file_with(const std::string& json, const std::string& data = "") {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  return bytes + json + data;
}

std::string entry(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}";
}

/// Parses `bytes` expecting a RuntimeFailure whose message names the file and contains `problem`.
void expect_refused(const std::string& bytes, const std::string& problem) {
  try {
    parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "bad.safetensors");
    ADD_FAILURE() << "accepted a file that should fail with: " << problem;
  } catch (const paratorch::RuntimeFailure& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("paratorch: bad.safetensors: ", 0), 0u) << message;
    EXPECT_NE(message.find(problem), std::string::npos) << "message: " << message << "\nwanted: " << problem;
  }
}

const std::string k8Bytes(8, '\x01');

}  // namespace

TEST(SafetensorsMalformed, EveryTruncationOfAGoodFileIsRefused) {
  const std::string good = safetensors_bytes(
      {{"a", torch::ones({3}, torch::kDouble)}, {"b", torch::zeros({0})}, {"c", torch::arange(5)}}, {{"k", "v"}});
  for (size_t length = 0; length < good.size(); ++length) {
    SCOPED_TRACE(length);
    EXPECT_THROW(parse_safetensors(reinterpret_cast<const uint8_t*>(good.data()), length, "t"),
                 paratorch::RuntimeFailure);
  }
  EXPECT_NO_THROW(parse_safetensors(reinterpret_cast<const uint8_t*>(good.data()), good.size(), "t"));
}

TEST(SafetensorsMalformed, HeaderLength) {
  expect_refused("", "shorter than the 8-byte header length");
  expect_refused(std::string(7, '\0'), "shorter than the 8-byte header length");
  std::string good = safetensors_bytes({{"a", torch::ones({2})}});
  std::string flipped = good;
  flipped[7] = '\xff';  // the top byte of N
  expect_refused(flipped, "exceeds the 100000000-byte limit");
  std::string past = good;
  past[0] = static_cast<char>(good.size() & 0xff), past[1] = static_cast<char>(good.size() >> 8);
  expect_refused(past, "runs past the end");
}

TEST(SafetensorsMalformed, HeaderJson) {
  expect_refused(file_with(R"({"a":)"), "not valid JSON");
  expect_refused(file_with(""), "not valid JSON");
  expect_refused(file_with("[1,2]"), "header is a JSON array, not an object");
  expect_refused(file_with(R"({"a":3})"), "tensor 'a': entry is a JSON number, not an object");
  expect_refused(file_with(R"({"a":{"x":[[[1]]]}})"), "nests JSON deeper");
  expect_refused(file_with("{\"a\":\"\xff\"}"), "not valid JSON");  // not UTF-8
}

TEST(SafetensorsMalformed, EntryKeys) {
  expect_refused(file_with(R"({"a":{"dtype":"F32","shape":[1]}})", "abcd"), "tensor 'a': missing key 'data_offsets'");
  expect_refused(file_with(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", "abcd"),
                 "tensor 'a': unexpected key 'x'");
  expect_refused(file_with(R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "abcd"),
                 "names key 'dtype' twice");
  expect_refused(file_with(R"({"a":)" + entry("F32", "[1]", "[0,4]") + R"(,"a":)" + entry("F32", "[1]", "[4,8]") + "}",
                           k8Bytes),
                 "names key 'a' twice");
}

TEST(SafetensorsMalformed, Dtype) {
  expect_refused(file_with(R"({"a":)" + entry("U16", "[1]", "[0,2]") + "}", "ab"),
                 "tensor 'a': dtype 'U16' is not supported (supported: F64, F32");
  expect_refused(file_with(R"({"a":{"dtype":7,"shape":[1],"data_offsets":[0,1]}})", "a"), "dtype 7 is not a string");
}

TEST(SafetensorsMalformed, Shape) {
  expect_refused(file_with(R"({"a":)" + entry("F32", "[-1]", "[0,4]") + "}", "abcd"),
                 "shape[0] = -1 is not an integer in [0, 2^63)");
  expect_refused(file_with(R"({"a":)" + entry("F32", "[1.5]", "[0,4]") + "}", "abcd"), "shape[0] = 1.5");
  expect_refused(file_with(R"({"a":)" + entry("F32", R"(["1"])", "[0,4]") + "}", "abcd"), "shape[0] = \"1\"");
  expect_refused(file_with(R"({"a":)" + entry("F32", "2", "[0,4]") + "}", "abcd"), "shape is a JSON number");
  expect_refused(file_with(R"({"a":)" + entry("F32", "[4294967296,4294967296]", "[0,4]") + "}", "abcd"),
                 "overflows 64-bit byte counts at shape[1]");
  expect_refused(file_with(R"({"a":)" + entry("U8", "[0,9223372036854775807,4]", "[0,0]") + "}"),
                 "overflows 64-bit byte counts at shape[2]");  // zero elements, absurd strides
  expect_refused(file_with(R"({"a":)" + entry("U8", "[18446744073709551615]", "[0,4]") + "}", "abcd"),
                 "is not an integer in [0, 2^63)");
}

TEST(SafetensorsMalformed, Offsets) {
  expect_refused(file_with(R"({"a":)" + entry("F32", "[1]", "[4,0]") + "}", k8Bytes),
                 "is not a range inside the 8-byte");
  expect_refused(file_with(R"({"a":)" + entry("F32", "[3]", "[0,12]") + "}", k8Bytes), "is not a range inside");
  expect_refused(file_with(R"({"a":)" + entry("F32", "[1]", "[0]") + "}", k8Bytes), "is not [begin, end]");
  expect_refused(file_with(R"({"a":)" + entry("F32", "[1]", "[0,-4]") + "}", k8Bytes), "is not [begin, end]");
  expect_refused(file_with(R"({"a":)" + entry("F32", "[1]", "{}") + "}", k8Bytes), "is not [begin, end]");
  expect_refused(file_with(R"({"a":)" + entry("F32", "[2]", "[0,4]") + "}", "abcd"),
                 "data_offsets cover 4 bytes but dtype F32 x shape needs 8");
}

TEST(SafetensorsMalformed, TensorsMustTileTheDataBlock) {
  expect_refused(file_with(R"({"a":)" + entry("F32", "[2]", "[0,8]") + R"(,"b":)" + entry("F32", "[2]", "[4,12]") + "}",
                           std::string(12, 'x')),
                 "tensors 'a' and 'b' overlap");
  expect_refused(file_with(R"({"a":)" + entry("F32", "[1]", "[0,4]") + R"(,"b":)" + entry("F32", "[1]", "[8,12]") + "}",
                           std::string(12, 'x')),
                 "data bytes [4, 8) belong to no tensor");
  expect_refused(file_with(R"({"a":)" + entry("F32", "[1]", "[0,4]") + "}", k8Bytes),
                 "data bytes [4, 8) after the last tensor belong to no tensor");
}

TEST(SafetensorsMalformed, Metadata) {
  expect_refused(file_with(R"({"__metadata__":{"k":1}})"),
                 "__metadata__ must map strings to strings; 'k' holds a JSON number");
  expect_refused(file_with(R"({"__metadata__":["k"]})"), "__metadata__ is a JSON array, not an object");
}

TEST(SafetensorsMalformed, BoolBytesMustBeZeroOrOne) {
  expect_refused(file_with(R"({"a":)" + entry("BOOL", "[2]", "[0,2]") + "}", std::string("\x01\x02", 2)),
                 "BOOL tensor 'a' holds byte value 2 at element 1");
}

TEST(SafetensorsMalformed, MissingFileNamesThePath) {
  try {
    read_safetensors("/nonexistent/dir/model.safetensors");
    FAIL();
  } catch (const paratorch::RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/model.safetensors: cannot open: No such file"),
              std::string::npos)
        << e.what();
  }
}
