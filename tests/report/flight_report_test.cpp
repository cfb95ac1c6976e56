// tests/report/flight_report_test.cpp — `paratorch inspect`'s diagnosis on
// hand-written records: who waits, who is behind, whom they wait for.
#include <gtest/gtest.h>

#include "report/flight_report.h"

#include <paratorch/errors.h>

#include <filesystem>
#include <fstream>

using namespace paratorch::report;

namespace {

FlightOp collective(const std::string& group, std::vector<int> ranks, int64_t seq, const std::string& state) {
  FlightOp op;
  op.op = "all_reduce";
  op.group = group;
  op.group_key = group + ":" + std::to_string(ranks.size()) + ":" + std::to_string(ranks[0]);
  op.group_ranks = std::move(ranks);
  op.seq = seq;
  op.state = state;
  op.started_us = 1'000'000;
  return op;
}

FlightOp transfer(const std::string& op_name, std::vector<int> ranks, int peer, const std::string& state) {
  FlightOp op = collective("pp", std::move(ranks), 0, state);
  op.op = op_name;
  op.peer = peer;
  return op;
}

FlightRecord record(int rank, int world, std::vector<FlightOp> ops) {
  FlightRecord r;
  r.rank = rank;
  r.world_size = world;
  r.host = "h" + std::to_string(rank / 2);
  r.dumped_us = 3'000'000;
  for (size_t i = 0; i < ops.size(); ++i) ops[i].id = i;
  r.recorded = ops.size();
  r.capacity = 100;
  r.ops = std::move(ops);
  return r;
}

std::string all_lines(const FlightDiagnosis& d) {
  std::string out;
  for (const auto& l : d.lines) out += l + "\n";
  return out;
}

}  // namespace

// Rank 1 never entered all_reduce #1; ranks 0 and 2 wait in it.
TEST(FlightReport, SkippedCollectiveBlamesTheRankBehind) {
  const std::vector<int> world{0, 1, 2};
  std::vector<FlightRecord> rs = {
      record(0, 3, {collective("world", world, 0, "done"), collective("world", world, 1, "started")}),
      record(1, 3, {collective("world", world, 0, "done")}),
      record(2, 3, {collective("world", world, 0, "done"), collective("world", world, 1, "started")})};
  const FlightDiagnosis d = diagnose_flight(rs);
  EXPECT_EQ(d.waiting, (std::vector<int>{0, 2}));
  EXPECT_EQ(d.blocking, (std::vector<int>{1}));
  EXPECT_TRUE(d.missing.empty());
  EXPECT_FALSE(d.deadlock);
  EXPECT_EQ(d.summary(), "inspect: waiting=0,2 blocking=1 missing=none deadlock=no");
  const std::string text = all_lines(d);
  EXPECT_NE(text.find("behind on group 'world' [world ranks 0,1,2]: rank 1 at all_reduce #0 (done), while ranks 0, 2 "
                      "reached all_reduce #1 (started)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("verdict: ranks 0, 2 wait for rank 1 (host h0), which never entered all_reduce #1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("waits in all_reduce #1 on group 'world' [world ranks 0,1,2], started 2.0 s before"),
            std::string::npos)
      << text;
}

// Rank 0 receives from rank 1; rank 1 waits in a dp all-reduce with rank 3,
// which wrote nothing: the chain ends at rank 3.
TEST(FlightReport, FollowsTheChainToTheRankWithoutRecord) {
  std::vector<FlightRecord> rs = {
      record(0, 4, {transfer("recv", {0, 1}, 1, "started")}),
      record(1, 4, {transfer("send", {0, 1}, 0, "done"), collective("dp", {1, 3}, 0, "started")}),
      record(2, 4, {})};
  const FlightDiagnosis d = diagnose_flight(rs);
  EXPECT_EQ(d.waiting, (std::vector<int>{0, 1}));
  EXPECT_EQ(d.blocking, (std::vector<int>{3}));
  EXPECT_EQ(d.missing, (std::vector<int>{3}));
  const std::string text = all_lines(d);
  EXPECT_NE(text.find("verdict: rank 1 waits for rank 3, which wrote no record"), std::string::npos) << text;
  EXPECT_NE(text.find("waits in recv #0 on group 'pp' from world rank 1"), std::string::npos) << text;
}

TEST(FlightReport, TransfersWaitingOnEachOtherAreADeadlock) {
  std::vector<FlightRecord> rs = {record(0, 2, {transfer("recv", {0, 1}, 1, "started")}),
                                  record(1, 2, {transfer("recv", {0, 1}, 0, "started")})};
  const FlightDiagnosis d = diagnose_flight(rs);
  EXPECT_TRUE(d.blocking.empty());
  EXPECT_TRUE(d.deadlock);
  EXPECT_NE(all_lines(d).find("verdict: deadlock: ranks 0, 1 wait for each other"), std::string::npos) << all_lines(d);
}

// Everyone entered the op: nobody to blame, the op itself is stuck.
TEST(FlightReport, OperationEveryoneReachedIsStuckNotBlamed) {
  std::vector<FlightRecord> rs = {record(0, 2, {collective("world", {0, 1}, 4, "started")}),
                                  record(1, 2, {collective("world", {0, 1}, 4, "started")})};
  const FlightDiagnosis d = diagnose_flight(rs);
  EXPECT_TRUE(d.blocking.empty());
  EXPECT_FALSE(d.deadlock);
  EXPECT_NE(all_lines(d).find("the operation itself is stuck"), std::string::npos) << all_lines(d);
}

// A rank whose ring wrapped past every op of the group cannot be judged
// behind on it: no blame from missing history.
TEST(FlightReport, WrappedRingIsNotTakenForBehind) {
  FlightRecord wrapped = record(1, 2, {collective("other", {1}, 7, "done")});
  wrapped.recorded = 5000;
  std::vector<FlightRecord> rs = {record(0, 2, {collective("world", {0, 1}, 3, "started")}), wrapped};
  const FlightDiagnosis d = diagnose_flight(rs);
  EXPECT_TRUE(d.blocking.empty());
  FlightRecord fresh = wrapped;
  fresh.recorded = 1;  // nothing lost: it truly never entered an op on 'world'
  rs[1] = fresh;
  EXPECT_EQ(diagnose_flight(rs).blocking, (std::vector<int>{1}));
}

TEST(FlightReport, HealthyRecordsBlameNobody) {
  std::vector<FlightRecord> rs = {record(0, 2, {collective("world", {0, 1}, 0, "done")}),
                                  record(1, 2, {collective("world", {0, 1}, 0, "done")})};
  const FlightDiagnosis d = diagnose_flight(rs);
  EXPECT_TRUE(d.waiting.empty());
  EXPECT_TRUE(d.blocking.empty());
  EXPECT_NE(all_lines(d).find("verdict: no rank waits in an operation"), std::string::npos);
}

TEST(FlightReport, BadFoldersAndFilesAreRefusedNamingThem) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "paratorch_flight_bad";
  fs::remove_all(dir);
  auto expect_usage = [&](const std::string& needle) {
    try {
      read_flight_records(dir.string());
      ADD_FAILURE() << "accepted; expected an error with '" << needle << "'";
    } catch (const paratorch::UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_usage("no folder");
  fs::create_directories(dir);
  expect_usage("holds no rank-K.json");
  std::ofstream(dir / "rank-0.json") << "{\"format\": \"paratorch-flight-record\", \"version\": 1";
  expect_usage("rank-0.json is not a paratorch flight record: not valid JSON");
  std::ofstream(dir / "rank-0.json") << "{\"format\": \"something-else\"}";
  expect_usage("rank-0.json is not a paratorch flight record: no \"format\"");
  const std::string ok =
      "{\"format\":\"paratorch-flight-record\",\"version\":1,\"rank\":0,\"world_size\":2,\"host\":\"a\","
      "\"reason\":\"\",\"dumped_us\":1,\"recorded\":0,\"capacity\":4,\"entries\":[]}";
  std::ofstream(dir / "rank-0.json") << ok;
  std::ofstream(dir / "rank-1.json") << ok;  // a second rank 0
  expect_usage("are both rank 0's record");
  std::ofstream(dir / "rank-1.json") << "{\"format\":\"paratorch-flight-record\",\"version\":1,\"rank\":5,"
                                        "\"world_size\":2}";
  expect_usage("rank 5 outside a world of 2");
  fs::remove_all(dir);
}
