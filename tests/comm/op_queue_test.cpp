// tests/comm/op_queue_test.cpp — the communication thread's queue
// (src/comm/op_queue.h): order, exactly-once, failures, and what a waiter
// may run itself.
#include "comm/op_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace paratorch::comm {
namespace {

OpInfo info_named(const std::string& op) {
  OpInfo info;
  info.op = op;
  info.group = "test";
  return info;
}

// Each round queues four ops, the first of random length so the waiter
// finds its op sometimes queued, sometimes running, sometimes done. Whoever
// runs them, they run once each and in order; the waiter may run ops up to
// its own but never one queued after it (that op may wait for a peer that
// first needs what the caller does next); a failure reaches the waiter.
TEST(OpQueue, OpsRunOnceInOrderAndAWaiterNeverRunsOnesQueuedAfterItsOwn) {
  OpQueue queue(30.0);
  const auto me = std::this_thread::get_id();
  int ran_here = 0;
  for (int round = 0; round < 300; ++round) {
    std::mutex mutex;
    std::vector<std::pair<int, std::thread::id>> runs;
    auto record = [&](int k) {
      std::lock_guard<std::mutex> lock(mutex);
      runs.emplace_back(k, std::this_thread::get_id());
    };
    const bool fail = round % 7 == 3;
    std::vector<std::shared_ptr<QueuedWork>> work;
    work.push_back(queue.submit(info_named("a"), [&, round] {
      std::this_thread::sleep_for(std::chrono::microseconds(round % 5 * 50));
      record(0);
    }));
    work.push_back(queue.submit(info_named("b"), [&, fail] {
      record(1);
      if (fail) throw std::runtime_error("b failed");
    }));
    work.push_back(queue.submit(info_named("c"), [&] { record(2); }));
    work.push_back(queue.submit(info_named("d"), [&] { record(3); }));
    if (fail) EXPECT_THROW(work[1]->wait(), std::runtime_error);
    else work[1]->wait();
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (const auto& [k, thread] : runs) {
        EXPECT_FALSE(k > 1 && thread == me) << "round " << round << ": op " << k << " ran on the waiter";
        if (thread == me) ++ran_here;
      }
    }
    work[3]->wait();
    ASSERT_EQ(runs.size(), 4u) << "round " << round;
    for (int k = 0; k < 4; ++k) EXPECT_EQ(runs[static_cast<size_t>(k)].first, k) << "round " << round;
    for (const auto& w : work) EXPECT_TRUE(w->is_completed());
  }
  // Not asserted (it depends on the scheduler), but shown: how often the
  // waiter ran an op itself instead of sleeping until the thread did.
  std::printf("ops run by the waiter: %d of %d\n", ran_here, 300 * 4);
}

}  // namespace
}  // namespace paratorch::comm
