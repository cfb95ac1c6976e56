// src/comm/peer_probe.h — which peers of a stuck operation are dead or silent.
//
// When a wait passes its deadline, "the all-reduce did not complete" says
// what hung but not who made it hang. Every rank therefore runs a small
// answering thread on its own duplicate of MPI_COMM_WORLD (MPI_THREAD_MULTIPLE
// lets it run beside the communication threads). At expiry the waiting rank
// asks each peer of the op "how far did you get on this group?"; a peer
// answers from its Watchdog (the last collective it entered there, and what
// it waits in now), under a short deadline of its own:
//   no answer in time                   -> dead, stopped or unreachable
//   answered, last collective #k < #n   -> silent: alive, never entered op #n
//   answered, entered #n (or later)     -> reached it; not to blame
// For a send/recv only the named peer is asked. Nothing here blocks without
// a deadline: a dead peer costs the asker kProbeDeadlineS, no more.
// (The same idea as PyTorch's NCCL flight recorder / watchdog dump, which
// compares each rank's last collective sequence number after a timeout.)
#pragma once
#include "comm/op_info.h"

#include <mpi.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace paratorch::comm {

/// How long the expiring rank waits for its peers' answers.
inline constexpr double kProbeDeadlineS = 2.0;

struct ProbeQuestion;

class PeerProbe {
 public:
  static PeerProbe& instance();

  /// Collective over MPI_COMM_WORLD (World's constructor): duplicates it and
  /// starts the answering thread.
  void start();
  /// Ends the answering thread and frees the duplicate (before MPI_Finalize).
  void stop();
  /// Asks the peers of `info`'s op where they are, waiting at most
  /// `deadline_s`; returns one sentence naming the dead and the silent ones.
  std::string diagnose(const OpInfo& info, double deadline_s);

 private:
  PeerProbe() = default;
  void answer_loop();
  void answer(int asker, const ProbeQuestion& question);

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::mutex diagnose_mutex_;  // one diagnosis at a time (answers carry its round)
  uint64_t round_ = 0;
};

}  // namespace paratorch::comm
