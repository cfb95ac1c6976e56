// src/comm/peer_probe.cpp — the answering thread and the expiring rank's
// questions (see peer_probe.h).
#include "comm/peer_probe.h"

#include "comm/flight_recorder.h"
#include "comm/host_table.h"
#include "comm/watchdog.h"

#include <chrono>
#include <cstring>
#include <sstream>
#include <vector>

namespace paratorch::comm {

// Plain bytes on the wire: every rank runs the same binary.
struct ProbeQuestion {
  uint64_t round;
  uint64_t group_key;
};

namespace {

struct ProbeAnswer {
  uint64_t round;
  int64_t sequence;  // last collective entered on the group, -1: none
  int32_t in_flight;
  char op[36];
  char waiting[256];  // what the peer waits in now, "" if nothing
};

constexpr int kQuestionTag = 7301;
constexpr int kAnswerTag = 7302;
constexpr int kWrittenTag = 7303;  // the peer's flight record is on disk (carries the round)
using Clock = std::chrono::steady_clock;

void copy_text(char* out, size_t size, const std::string& text) {
  std::strncpy(out, text.c_str(), size - 1);
  out[size - 1] = '\0';
}

/// Polls `request` until done or `until`; false when time ran out.
bool complete_by(MPI_Request* request, Clock::time_point until) {
  for (;;) {
    int flag = 0;
    if (MPI_Test(request, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) return false;
    if (flag) return true;
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

uint64_t round_of(const ProbeAnswer& a) { return a.round; }
uint64_t round_of(uint64_t written_round) { return written_round; }

/// One receive per asked peer, of an answer or a record-written note. A
/// message left from an earlier diagnosis (another round) is dropped and
/// the receive posted again.
struct Awaited {
  explicit Awaited(size_t n) : requests(n, MPI_REQUEST_NULL), done(n, false), pending(n) {}
  std::vector<MPI_Request> requests;
  std::vector<bool> done;
  size_t pending;

  template <typename T>
  void poll(std::vector<T>& buffers, uint64_t round, const std::vector<int>& from, int tag, MPI_Comm comm) {
    for (size_t i = 0; i < requests.size(); ++i) {
      if (done[i]) continue;
      int flag = 0;
      if (MPI_Test(&requests[i], &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS || !flag) continue;
      if (round_of(buffers[i]) == round) {
        done[i] = true;
        --pending;
      } else {
        MPI_Irecv(&buffers[i], sizeof(T), MPI_BYTE, from[i], tag, comm, &requests[i]);
      }
    }
  }
  /// Frees the receives still open (their buffers must then outlive this
  /// call); true when none was.
  bool release() {
    bool none_open = true;
    for (size_t i = 0; i < requests.size(); ++i) {
      if (done[i]) continue;
      MPI_Request_free(&requests[i]);
      none_open = false;
    }
    return none_open;
  }
};

/// One peer's place in the op, in words.
struct Verdict {
  std::vector<std::string> dead, silent, reached, ahead;
};

std::string last_entered(const ProbeAnswer& a) {
  if (a.sequence < 0) return "none";
  return std::string(a.op) + " #" + std::to_string(a.sequence) + (a.in_flight ? ", in progress" : ", completed");
}

void judge(const OpInfo& info, int peer, bool answered, const ProbeAnswer& a, Verdict& v) {
  const std::string who = describe_world_rank(peer);
  if (!answered) {
    v.dead.push_back(who);
    return;
  }
  const std::string now = a.waiting[0] ? std::string("; waits in ") + a.waiting : "; waits in nothing";
  // A send/recv peer that answers is alive but not at the matching transfer
  // (their numbering is per rank, so it cannot be compared).
  if (info.is_p2p()) {
    v.silent.push_back(who + " (alive" + now + ")");
  } else if (a.sequence < static_cast<int64_t>(info.sequence)) {
    v.silent.push_back(who + " (last entered there: " + last_entered(a) + now + ")");
  } else if (a.sequence == static_cast<int64_t>(info.sequence)) {
    v.reached.push_back(who);
  } else {
    v.ahead.push_back(who + " (at " + last_entered(a) + ")");
  }
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out;
}

std::string sentence(const OpInfo& info, const Verdict& v, double deadline_s) {
  std::ostringstream s;
  s << "Peers: ";
  const std::string op = info.op + " #" + std::to_string(info.sequence) + " on group '" + info.group + "'";
  if (!v.dead.empty()) s << "dead or stopped (no answer within " << deadline_s << " s): " << join(v.dead) << ". ";
  if (!v.silent.empty())
    s << "silent (alive, never entered " << (info.is_p2p() ? "the matching transfer" : op) << "): " << join(v.silent) << ". ";
  if (!v.ahead.empty()) s << "ran past it (mismatched ops): " << join(v.ahead) << ". ";
  if (!v.reached.empty()) s << "reached it: " << join(v.reached) << ". ";
  if (v.dead.empty() && v.silent.empty() && v.ahead.empty())
    s << "none dead or silent (the op itself is stuck, or a peer is overloaded).";
  std::string out = s.str();
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

/// The world ranks to ask about `info`: the whole group, or a send/recv's peer.
std::vector<int> peers_of(const OpInfo& info) {
  std::vector<int> peers;
  if (info.is_p2p()) {
    if (info.peer >= 0 && info.peer < static_cast<int>(info.group_world_ranks.size()))
      peers.push_back(info.group_world_ranks[static_cast<size_t>(info.peer)]);
    return peers;
  }
  for (int r : info.group_world_ranks)
    if (r != info.world_rank) peers.push_back(r);
  return peers;
}

}  // namespace

PeerProbe& PeerProbe::instance() {
  static PeerProbe probe;
  return probe;
}

void PeerProbe::start() {
  if (comm_ != MPI_COMM_NULL) return;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);  // a dead peer is an answer, not a crash
  stopping_ = false;
  thread_ = std::thread([this] { answer_loop(); });
}

void PeerProbe::stop() {
  if (comm_ == MPI_COMM_NULL) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  MPI_Comm_free(&comm_);
  comm_ = MPI_COMM_NULL;
}

void PeerProbe::answer_loop() {
  ProbeQuestion question{};
  MPI_Status status;
  MPI_Request request = MPI_REQUEST_NULL;
  MPI_Irecv(&question, sizeof question, MPI_BYTE, MPI_ANY_SOURCE, kQuestionTag, comm_, &request);
  // A 50 ms wait that lasted longer than the askers wait means this process
  // was stopped (SIGSTOP, a debugger) or starved. The questions that came
  // meanwhile are then older than their askers' patience: the askers have
  // already named this rank, and its state now (perhaps past the op, once
  // continued: Open MPI continues stopped ranks to end a job) is not the
  // state their verdict is about, so they get neither an answer nor a
  // record. Measured on this process's own clock: no two hosts' clocks
  // need agree.
  bool stalled = false;
  for (;;) {
    int flag = 0;
    MPI_Test(&request, &flag, &status);
    if (flag) {
      if (!stalled) answer(status.MPI_SOURCE, question);
      MPI_Irecv(&question, sizeof question, MPI_BYTE, MPI_ANY_SOURCE, kQuestionTag, comm_, &request);
      continue;
    }
    // Questions come only after a deadline: a 50 ms poll costs nothing
    // measurable and answers well within kProbeDeadlineS.
    const auto before = Clock::now();
    std::unique_lock<std::mutex> lock(mutex_);
    if (wake_.wait_for(lock, std::chrono::milliseconds(50), [this] { return stopping_; })) break;
    stalled = Clock::now() - before > std::chrono::duration<double>(kProbeDeadlineS);
  }
  MPI_Cancel(&request);
  MPI_Wait(&request, MPI_STATUS_IGNORE);
}

namespace {

/// Sends `bytes` (heap, owned) to `peer`; frees them once sent, or leaks them
/// if the peer is gone and the send may never complete.
template <typename T>
void send_owned(T* bytes, int peer, int tag, MPI_Comm comm) {
  MPI_Request request;
  if (MPI_Isend(bytes, sizeof *bytes, MPI_BYTE, peer, tag, comm, &request) != MPI_SUCCESS) return;
  if (complete_by(&request, Clock::now() + std::chrono::seconds(1)))
    delete bytes;
  else
    MPI_Request_free(&request);
}

}  // namespace

void PeerProbe::answer(int asker, const ProbeQuestion& question) {
  // The answer first: where this rank is now, before anything else runs.
  // Its flight record (a question means the asker's deadline passed, so the
  // record is part of `paratorch inspect`'s picture) is written after, so a
  // slow disk never turns a live rank into a "dead" one; the asker waits,
  // within its deadline, for the note that it is written before it ends the
  // job.
  Watchdog::Progress progress = Watchdog::instance().progress_of(question.group_key);
  auto* a = new ProbeAnswer{};
  a->round = question.round;
  a->sequence = progress.sequence;
  a->in_flight = progress.in_flight ? 1 : 0;
  copy_text(a->op, sizeof a->op, progress.op);
  copy_text(a->waiting, sizeof a->waiting, Watchdog::instance().waiting_in());
  send_owned(a, asker, kAnswerTag, comm_);
  FlightRecorder::instance().dump("asked by " + describe_world_rank(asker) + " after its deadline passed");
  send_owned(new uint64_t(question.round), asker, kWrittenTag, comm_);
}

std::string PeerProbe::diagnose(const OpInfo& info, double deadline_s) {
  if (comm_ == MPI_COMM_NULL) return "Peers: not probed (no World).";
  std::lock_guard<std::mutex> lock(diagnose_mutex_);
  const uint64_t round = ++round_;
  const std::vector<int> peers = peers_of(info);
  // Every other rank is asked (each writes its flight record when asked);
  // only the op's peers are judged.
  int world_size = 1;
  MPI_Comm_size(comm_, &world_size);
  std::vector<int> asked;
  for (int r = 0; r < world_size; ++r)
    if (r != info.world_rank) asked.push_back(r);
  const size_t n = asked.size();
  // Heap buffers, leaked for a rank that never answers (its requests may
  // still write into them); the job ends right after.
  auto* questions = new std::vector<ProbeQuestion>(n, ProbeQuestion{round, info.group_key});
  auto* answers = new std::vector<ProbeAnswer>(n);
  auto* written = new std::vector<uint64_t>(n);
  std::vector<MPI_Request> sends(n, MPI_REQUEST_NULL);
  Awaited answer_of(n), written_of(n);
  for (size_t i = 0; i < n; ++i) {
    MPI_Irecv(&(*answers)[i], sizeof(ProbeAnswer), MPI_BYTE, asked[i], kAnswerTag, comm_, &answer_of.requests[i]);
    MPI_Irecv(&(*written)[i], sizeof(uint64_t), MPI_BYTE, asked[i], kWrittenTag, comm_, &written_of.requests[i]);
    MPI_Isend(&(*questions)[i], sizeof(ProbeQuestion), MPI_BYTE, asked[i], kQuestionTag, comm_, &sends[i]);
  }
  // The verdict needs the answers; ending the job waits, within the same
  // deadline, for the records they announce, so inspect finds them.
  const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(deadline_s));
  while ((answer_of.pending > 0 || written_of.pending > 0) && Clock::now() < until) {
    answer_of.poll(*answers, round, asked, kAnswerTag, comm_);
    written_of.poll(*written, round, asked, kWrittenTag, comm_);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const bool answers_closed = answer_of.release();
  bool all_done = written_of.release() && answers_closed;
  for (size_t i = 0; i < n; ++i) {
    if (!complete_by(&sends[i], Clock::now())) {
      MPI_Request_free(&sends[i]);
      all_done = false;
    }
  }
  Verdict verdict;
  for (int peer : peers) {
    const size_t i = static_cast<size_t>(peer < info.world_rank ? peer : peer - 1);  // asked skips this rank
    judge(info, peer, answer_of.done[i], (*answers)[i], verdict);
  }
  if (all_done) {
    delete questions;
    delete answers;
    delete written;
  }
  return sentence(info, verdict, deadline_s);
}

}  // namespace paratorch::comm
