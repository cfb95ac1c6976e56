// tests/formats/safetensors_test.cpp — safetensors files that are well formed:
// every dtype round trips, metadata survives, and the bytes are exactly what
// the format's specification (and the reference writer) lays down.
#include <gtest/gtest.h>

#include "formats/safetensors.h"
#include <paratorch/errors.h>

#include <cstdio>

using namespace paratorch::formats;

namespace {

SafetensorsFile reparse(const std::string& bytes) {
  return parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "test.safetensors");
}

std::map<std::string, torch::Tensor> every_dtype() {
  torch::manual_seed(3);
  return {
      {"f64", torch::randn({2, 3}, torch::kDouble)},
      {"f32", torch::randn({4})},
      {"f16", torch::randn({3, 2}).to(torch::kHalf)},
      {"bf16", torch::randn({5}).to(torch::kBFloat16)},
      {"i64", torch::tensor({INT64_MIN, int64_t{-1}, INT64_MAX})},
      {"i32", torch::tensor({INT32_MIN, 0, INT32_MAX})},
      {"i16", torch::tensor({-32768, 7, 32767}, torch::kShort)},
      {"i8", torch::tensor({-128, -1, 127}, torch::kChar)},
      {"u8", torch::arange(256).to(torch::kByte).reshape({16, 16})},
      {"bool", torch::tensor({true, false, false, true})},
      {"empty", torch::empty({0, 3})},
      {"scalar", torch::tensor(2.5)},
  };
}

}  // namespace

TEST(Safetensors, EveryDtypeShapeAndValueRoundTrips) {
  const auto tensors = every_dtype();
  const auto file = reparse(safetensors_bytes(tensors));
  ASSERT_EQ(file.tensors.size(), tensors.size());
  for (const auto& [name, expected] : tensors) {
    SCOPED_TRACE(name);
    const auto& got = file.tensors.at(name);
    EXPECT_EQ(got.scalar_type(), expected.scalar_type());
    EXPECT_EQ(got.sizes(), expected.sizes());
    EXPECT_TRUE(got.is_contiguous());
    EXPECT_TRUE(torch::equal(got, expected));
  }
  EXPECT_EQ(file.tensors.at("scalar").dim(), 0);
  EXPECT_TRUE(file.metadata.empty());
}

TEST(Safetensors, MetadataRoundTripsWithEscapesAndUnicode) {
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"quote\"and\\slash", "line\nbreak\ttab"}, {"ünïcode", "日本"}, {"empty", ""}};
  const auto file = reparse(safetensors_bytes({{"x", torch::ones({2})}}, metadata));
  EXPECT_EQ(file.metadata, metadata);
}

TEST(Safetensors, HeaderIsAlignedAndTensorsLieInNameOrder) {
  const auto bytes = safetensors_bytes(every_dtype(), {{"k", "v"}});
  const auto header = parse_safetensors_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "t");
  EXPECT_EQ(header.data_start % 8, 0u);
  uint64_t offset = 0;
  std::string previous;
  for (const auto& e : header.entries) {
    EXPECT_LT(previous, e.name);
    EXPECT_EQ(e.begin, offset);
    offset = e.end;
    previous = e.name;
  }
  EXPECT_EQ(header.data_start + offset, bytes.size());
}

TEST(Safetensors, WriterMatchesAHandWrittenFileByteForByte) {
  // Per the specification: u64 little-endian N, N bytes of JSON padded with
  // spaces to a multiple of 8, then the little-endian data block.
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"I16","shape":[1,2],"data_offsets":[8,12]}}   )";
  ASSERT_EQ(json.size(), 144u);
  std::string expected("\x90\0\0\0\0\0\0\0", 8);
  expected += json;
  expected += std::string("\x00\x00\x80\x3f" "\x00\x00\x00\xc0", 8);  // 1.0f, -2.0f
  expected += std::string("\x07\x00" "\xff\xff", 4);                  // int16 7, -1
  const std::map<std::string, torch::Tensor> tensors = {
      {"a", torch::tensor({1.0f, -2.0f})}, {"b", torch::tensor({{7, -1}}, torch::kShort)}};
  EXPECT_EQ(safetensors_bytes(tensors, {{"format", "pt"}}), expected);

  const auto file = reparse(expected);
  EXPECT_TRUE(torch::equal(file.tensors.at("a"), tensors.at("a")));
  EXPECT_TRUE(torch::equal(file.tensors.at("b"), tensors.at("b")));
  EXPECT_EQ(file.metadata.at("format"), "pt");
}

TEST(Safetensors, WriterMatchesTheReferenceImplementationsTestVectors) {
  // The byte sequences that huggingface/safetensors' own unit tests expect of
  // its serializer (tensor.rs: test_serialization, test_empty,
  // test_serialization_forced_alignement), spelled out as text here.
  auto le_u64 = [](uint64_t n) {
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    return out;
  };
  const std::string floats_0_to_5(  // 0.0f .. 5.0f, little-endian
      "\0\0\0\0" "\0\0\x80\x3f" "\0\0\0\x40" "\0\0\x40\x40" "\0\0\x80\x40" "\0\0\xa0\x40", 24);
  const auto values = torch::arange(6, torch::kFloat);
  EXPECT_EQ(safetensors_bytes({{"attn.0", values.reshape({1, 2, 3})}}),
            le_u64(64) + R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})" + floats_0_to_5);
  EXPECT_EQ(safetensors_bytes({{"attn0", values.reshape({1, 1, 2, 3})}}),
            le_u64(72) + R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       )" +
                floats_0_to_5);
  EXPECT_EQ(safetensors_bytes({}), le_u64(8) + "{}      ");
  EXPECT_EQ(safetensors_bytes({}, {{"framework", "pt"}}), le_u64(40) + R"({"__metadata__":{"framework":"pt"}}     )");
}

TEST(Safetensors, ReadsHeadersInAnyKeyOrderAndWhitespace) {
  // Other writers order keys differently and may pretty-print.
  const std::string json = "{ \"w\" : { \"data_offsets\" : [0, 4], \"shape\": [1], \"dtype\": \"F32\" } ,\n"
                           " \"__metadata__\": {} }";
  std::string bytes(8, '\0');
  bytes[0] = static_cast<char>(json.size());
  bytes += json + std::string("\x00\x00\x40\x40", 4);  // 3.0f
  EXPECT_EQ(reparse(bytes).tensors.at("w").item<float>(), 3.0f);
}

TEST(Safetensors, WriterTakesAnyLayoutAndTheReaderOwnsItsMemory) {
  auto base = torch::arange(12, torch::kFloat).reshape({3, 4});
  std::string bytes = safetensors_bytes({{"t", base.t()}, {"s", base.slice(1, 1, 3)}});
  auto file = reparse(bytes);
  std::fill(bytes.begin(), bytes.end(), '\0');  // the tensors must not alias these bytes
  bytes.clear();
  bytes.shrink_to_fit();
  EXPECT_TRUE(torch::equal(file.tensors.at("t"), base.t()));
  EXPECT_TRUE(torch::equal(file.tensors.at("s"), base.slice(1, 1, 3)));
}

TEST(Safetensors, FilesRoundTripThroughTheAtomicWriter) {
  const std::string path = ::testing::TempDir() + "paratorch_roundtrip.safetensors";
  const auto tensors = every_dtype();
  write_safetensors(path, tensors, {{"step", "7"}});
  const auto file = read_safetensors(path);
  EXPECT_EQ(file.metadata.at("step"), "7");
  for (const auto& [name, t] : tensors) EXPECT_TRUE(torch::equal(file.tensors.at(name), t)) << name;
  std::remove(path.c_str());
}

TEST(Safetensors, WriterRefusesWhatTheFormatCannotHold) {
  EXPECT_THROW(safetensors_bytes({{"c", torch::zeros({2}, torch::kComplexFloat)}}), paratorch::UsageError);
  EXPECT_THROW(safetensors_bytes({{"__metadata__", torch::zeros({2})}}), paratorch::UsageError);
  EXPECT_THROW(safetensors_bytes({{std::string("bad\xff", 4), torch::zeros({2})}}), paratorch::UsageError);
}
