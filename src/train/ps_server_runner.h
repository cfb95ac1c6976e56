// src/train/ps_server_runner.h — a parameter server's side of the training
// loop (run_loop.h) in an SSP or asynchronous ps job (ps_trainer.h).
//
// Workers compute at their own pace, within the staleness bound, as
// Hogwild's threads do; the servers follow the run's global steps in
// order, so they are the ranks that run the loop. Global step s is done on
// a server once every live worker has pushed it: the slowest live worker's
// clock with staleness > 0, and s x W of the run's W-way slots pushed with
// staleness < 0 (server 0 hands them out). So each server's step(s) serves
// pulls and pushes until step s is done, and the loop on server 0 (world
// rank 0) writes that step's line, as it does for every mode:
//   - loss: the mean of the workers' latest pushed losses; step_ms: the
//     time the job took to finish that global step;
//   - a mid-run validation: the worker computing share 0 of step s + 1
//     measures it on the parameters it pulled for s + 1 (after s + 1
//     updates under BSP) and sends it with that push; server 0 serves
//     until it arrives, so the line for s + 1 carries its val_loss. After
//     a worker is lost it waits no longer than step s + 1 itself (the
//     validating worker may be the lost one), and the line has none
//     (Validation::measured false);
//   - the last step serves until every worker is done or lost; server 0
//     then joins the servers' rows into the final parameters, validates
//     them (the summary's final_loss), and adds the staleness histogram,
//     apply rates, each worker's steps/s and lost_workers to the line;
//   - checkpoints: each server writes its rows at the cadence's steps
//     (checkpoints/server-K/); a faster worker's updates past s may be in
//     them, as an asynchronous job's state always has some in flight.
#pragma once
#include "parallel/async/ps_faults.h"
#include "parallel/async/ps_server.h"
#include "train/ps_job.h"
#include "train/run_loop.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace paratorch::async {

class PsServerRunner : public train::StepRunner {
 public:
  explicit PsServerRunner(Job& job);
  World& world() override { return job_.world; }
  const train::Config& config() const override { return job_.config; }
  const data::Dataset& dataset() const override { return *job_.dataset; }
  int64_t begin(const std::string& resume_dir) override;
  void announce(int64_t first_step) override;
  train::StepOutcome step(int64_t s) override;
  train::Validation validate() override;
  void checkpoint(int64_t steps_done) override;
  /// Point to point (ps_trace.h): server 0 gathers the other servers' and
  /// the finished workers' spans, so a lost worker is not waited for.
  void write_trace(const std::string& path) override;
  void finish() override;
  /// The final parameters' validation loss.
  double final_loss(double /*last_loss*/, const train::Validation& final) const override { return final.loss; }
  std::string plot_suffix() const override { return " (ps)"; }
  /// Server 0's own: a lost worker must not be needed to finish.
  double job_peak_rss_mb() override;

 private:
  /// Global steps every live worker has pushed to this server.
  int64_t steps_done() const;
  /// After the last step: server 0 receives every server's rows and statistics, the others send theirs.
  void join_final_rows();
  void add_final_fields(train::StepOutcome& o) const;

  Job& job_;
  const int index_;
  const Injection injection_;
  std::unique_ptr<Server> server_;
  int64_t start_ = 0, taken_ = 0;                      // the first step; steps taken so far
  std::map<int64_t, double> validations_;              // by step: what share 0's worker measured
  std::map<std::string, torch::Tensor> final_params_;  // server 0, after the last step
  std::vector<std::vector<float>> final_stats_;        // server 0: each server's, after the last step
};

}  // namespace paratorch::async
