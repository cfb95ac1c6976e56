// tests/comm/flight_recorder_test.cpp — the ring buffer keeps the last N
// operations with their states, and its JSON reads back as a record.
#include <gtest/gtest.h>

#include "comm/flight_recorder.h"
#include "report/flight_report.h"

#include <paratorch/errors.h>
#include <paratorch/flight_recorder.h>

#include <filesystem>
#include <stdexcept>

using namespace paratorch::comm;

namespace {

OpInfo flight_op(const std::string& op, uint64_t seq) {
  OpInfo info = make_op_info(op, torch::zeros({4}));
  info.group = "dp";
  info.group_world_ranks = {0, 1};
  info.group_size = 2;
  info.sequence = seq;
  info.group_key = group_key_of("dp", {0, 1});
  return info;
}

}  // namespace

TEST(FlightRecorder, KeepsTheLastCapacityOperationsInOrder) {
  FlightRecorder& r = FlightRecorder::instance();
  r.configure(0, "");
  r.configure(3, "");
  std::vector<uint64_t> ids;
  for (uint64_t s = 0; s < 5; ++s) ids.push_back(r.record(flight_op("all_reduce", s), FlightState::kQueued));
  r.mark(ids[0], FlightState::kDone);  // overwritten: must not touch entry 3
  r.mark(ids[3], FlightState::kStarted);
  r.mark(ids[4], FlightState::kDone);
  const auto entries = r.snapshot();
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].id, 2u);
  EXPECT_EQ(entries[0].state, FlightState::kQueued);
  EXPECT_EQ(entries[1].info.sequence, 3u);
  EXPECT_EQ(entries[1].state, FlightState::kStarted);
  EXPECT_GT(entries[1].started_us, 0);
  EXPECT_EQ(entries[1].done_us, 0);
  EXPECT_EQ(entries[2].state, FlightState::kDone);
  EXPECT_GE(entries[2].done_us, entries[2].queued_us);
  r.configure(0, "");
  EXPECT_EQ(r.record(flight_op("all_reduce", 9), FlightState::kStarted), FlightRecorder::kNone);
  EXPECT_TRUE(r.snapshot().empty());
}

TEST(FlightRecorder, ScopeMarksFailedWhenLeftByAnException) {
  FlightRecorder& r = FlightRecorder::instance();
  r.configure(0, "");
  r.configure(4, "");
  const uint64_t ok = r.record(flight_op("broadcast", 0), FlightState::kQueued);
  { FlightScope scope(ok); }
  const uint64_t bad = r.record(flight_op("broadcast", 1), FlightState::kQueued);
  try {
    FlightScope scope(bad);
    throw std::runtime_error("peer gone");
  } catch (const std::runtime_error&) {
  }
  const auto entries = r.snapshot();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].state, FlightState::kDone);
  EXPECT_EQ(entries[1].state, FlightState::kFailed);
  r.configure(0, "");
}

TEST(FlightRecorder, DumpReadsBackAsARecord) {
  const std::string dir = (std::filesystem::temp_directory_path() / "paratorch_flight_test").string();
  std::filesystem::remove_all(dir);
  FlightRecorder& r = FlightRecorder::instance();
  r.configure(0, "");
  r.configure(8, dir);
  r.set_identity(1, 2, "h1");
  r.record(flight_op("all_reduce", 0), FlightState::kQueued);
  OpInfo recv = flight_op("recv", 0);
  recv.peer = 0;
  r.record(recv, FlightState::kStarted);
  const std::string path = paratorch::dump_flight_record("test \xff reason");  // not UTF-8: replaced, not fatal
  ASSERT_EQ(path, dir + "/rank-1.json");
  const auto records = paratorch::report::read_flight_records(dir);
  ASSERT_EQ(records.size(), 1u);
  const auto& rec = records[0];
  EXPECT_EQ(rec.rank, 1);
  EXPECT_EQ(rec.world_size, 2);
  EXPECT_EQ(rec.host, "h1");
  ASSERT_EQ(rec.ops.size(), 2u);
  EXPECT_EQ(rec.ops[0].op, "all_reduce");
  EXPECT_EQ(rec.ops[0].state, "queued");
  EXPECT_EQ(rec.ops[0].shape, std::vector<int64_t>{4});
  EXPECT_EQ(rec.ops[0].dtype, "float32");
  EXPECT_EQ(rec.ops[1].label(), "recv #0 on group 'dp' from world rank 0");
  EXPECT_EQ(rec.ops[1].group_key, rec.ops[0].group_key);
  r.configure(0, "");  // no folder: nothing written, no error
  EXPECT_EQ(paratorch::dump_flight_record("x"), "");
  r.set_identity(0, 1, "");
  std::filesystem::remove_all(dir);
}

TEST(FlightRecorder, NegativeCapacityIsRefusedNamingTheField) {
  paratorch::FlightRecorderOptions options;
  options.capacity = -1;
  try {
    options.validate();
    FAIL() << "accepted capacity -1";
  } catch (const paratorch::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("FlightRecorderOptions::capacity"), std::string::npos) << e.what();
  }
}
