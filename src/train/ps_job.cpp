// src/train/ps_job.cpp — see ps_job.h.
#include "train/ps_job.h"

#include "train/async_layout.h"
#include <paratorch/communicator.h>

#include <unistd.h>

#include <functional>

namespace paratorch::async {
namespace {

// Every rank's pid, and whether it shares this node (a hash of the host
// name): a server checks a silent local worker's process (ps_server.h).
std::vector<int64_t> local_pids(World& world) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  const auto mine = static_cast<int64_t>(std::hash<std::string>{}(host) & 0x7fffffffffffLL);
  auto all = torch::empty({2 * world.size()}, torch::kLong);
  world.comm()->all_gather(all, torch::tensor({static_cast<int64_t>(getpid()), mine}, torch::kLong));
  std::vector<int64_t> pids;
  for (int r = 0; r < world.size(); ++r)
    pids.push_back(all[2 * r + 1].item<int64_t>() == mine ? all[2 * r].item<int64_t>() : -1);
  return pids;
}

}  // namespace

Job::Job(World& w, const train::Config& c) : world(w), config(c) {
  servers = config.parallel.servers;
  workers = ps_workers(config, world.size());
  local_pids = async::local_pids(world);
  dataset = data::make_dataset(config.data.source, config.model, static_cast<uint64_t>(config.train.seed));
  model = models::make_model(config.model);
  model->initialize(static_cast<uint64_t>(config.train.seed));
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& item : model->named_parameters(true)) {
    named.emplace_back(item.key(), item.value());
    full[item.key()] = item.value().detach();
  }
  plan = plan_shards(named, servers);
  schedule = optim::LrSchedule{config.optim.lr, config.optim.warmup_steps, config.train.steps};
}

std::string Job::layout() const {
  return "ps servers=" + std::to_string(servers) + " workers=" + std::to_string(workers);
}

}  // namespace paratorch::async
