// src/report/flight_report.cpp — parsing the records and the diagnosis (see
// flight_report.h).
#include "report/flight_report.h"

#include <paratorch/errors.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace paratorch::report {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

[[noreturn]] void bad_record(const std::string& file, const std::string& problem) {
  throw UsageError("paratorch inspect: " + file + " is not a paratorch flight record: " + problem +
                   " (records are written as rank-K.json by each rank; docs/faults.md)");
}

template <typename T>
T field(const json& j, const char* key, const std::string& file) {
  if (!j.contains(key)) bad_record(file, std::string("field '") + key + "' is missing");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    bad_record(file, std::string("field '") + key + "' has the wrong type");
  }
}

FlightOp parse_op(const json& e, const std::string& file) {
  FlightOp op;
  op.id = field<uint64_t>(e, "id", file);
  op.op = field<std::string>(e, "op", file);
  op.seq = field<int64_t>(e, "seq", file);
  op.group = field<std::string>(e, "group", file);
  op.group_key = field<std::string>(e, "group_key", file);
  op.group_ranks = field<std::vector<int>>(e, "group_ranks", file);
  op.group_rank = field<int>(e, "group_rank", file);
  op.peer = field<int>(e, "peer", file);
  op.dtype = field<std::string>(e, "dtype", file);
  op.shape = field<std::vector<int64_t>>(e, "shape", file);
  op.bytes = field<int64_t>(e, "bytes", file);
  op.state = field<std::string>(e, "state", file);
  op.queued_us = field<int64_t>(e, "queued_us", file);
  op.started_us = field<int64_t>(e, "started_us", file);
  op.done_us = field<int64_t>(e, "done_us", file);
  static const std::set<std::string> states{"queued", "started", "done", "failed"};
  if (!states.count(op.state)) bad_record(file, "operation " + std::to_string(op.id) + " has state '" + op.state + "'");
  return op;
}

std::string join_ranks(const std::vector<int>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? "," : "") + std::to_string(ranks[i]);
  return out;
}

/// "rank 1" / "ranks 0, 2".
std::string ranks_words(const std::vector<int>& ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  return out;
}

std::string seconds(int64_t us) {
  std::ostringstream s;
  s.precision(1);
  s << std::fixed << static_cast<double>(us) / 1e6;
  return s.str();
}

/// The oldest operation not finished: started ones first (a queued op waits
/// behind a started one on its own communicator).
const FlightOp* waits_in(const FlightRecord& r) {
  for (const char* state : {"started", "queued"})
    for (const FlightOp& op : r.ops)
      if (op.state == state) return &op;
  return nullptr;
}

/// What a rank knows of a group: its last collective there.
struct GroupPlace {
  bool known = false;  // false: the ring wrapped past every op of the group
  const FlightOp* last = nullptr;  // nullptr: never entered one (when known)
  int64_t seq() const { return last ? last->seq : -1; }
};

GroupPlace place_on(const FlightRecord& r, const std::string& group_key) {
  GroupPlace place;
  for (const FlightOp& op : r.ops)
    if (!op.is_p2p() && op.group_key == group_key && (!place.last || op.seq > place.last->seq)) place.last = &op;
  place.known = place.last || r.recorded <= r.ops.size();
  return place;
}

std::string place_words(const GroupPlace& p) {
  if (!p.last) return "none";
  return p.last->op + " #" + std::to_string(p.last->seq) + " (" + p.last->state + ")";
}

struct Edge {
  int to;
  std::string why;
};

class Diagnoser {
 public:
  explicit Diagnoser(const std::vector<FlightRecord>& records) {
    for (const FlightRecord& r : records) {
      by_rank_[r.rank] = &r;
      world_ = std::max({world_, r.world_size, r.rank + 1});
    }
  }

  FlightDiagnosis run() {
    FlightDiagnosis d;
    for (int r = 0; r < world_; ++r)
      if (!by_rank_.count(r)) d.missing.push_back(r);
    d.lines.push_back("inspect: " + std::to_string(by_rank_.size()) + " flight record(s) for a world of " +
                      std::to_string(world_) + " ranks" +
                      (d.missing.empty() ? "" : "; none from " + ranks_words(d.missing) +
                                                    " (dead, stopped, or killed before it could write)"));
    for (const auto& [rank, record] : by_rank_) d.lines.push_back(rank_line(*record));
    behind_lines(d);
    for (const auto& [rank, record] : by_rank_)
      if (waits_in(*record)) {
        d.waiting.push_back(rank);
        edges_[rank] = edges_of(*record, *waits_in(*record));
      }
    blame(d);
    return d;
  }

 private:
  std::string who(int rank) const {
    auto it = by_rank_.find(rank);
    if (it == by_rank_.end() || it->second->host.empty()) return "rank " + std::to_string(rank);
    return "rank " + std::to_string(rank) + " (host " + it->second->host + ")";
  }

  std::string rank_line(const FlightRecord& r) const {
    std::string line = who(r.rank) + ": ";
    if (const FlightOp* op = waits_in(r)) {
      const int64_t since = op->started_us ? op->started_us : op->queued_us;
      line += "waits in " + op->label() + " [world ranks " + join_ranks(op->group_ranks) + "]";
      if (!op->dtype.empty()) {
        line += ", " + op->dtype + "[";
        for (size_t i = 0; i < op->shape.size(); ++i) line += (i ? "," : "") + std::to_string(op->shape[i]);
        line += "]";
      }
      line += ", " + op->state + " " + seconds(r.dumped_us - since) + " s before the record was written";
    } else if (!r.ops.empty()) {
      line += "waits in nothing; last operation " + r.ops.back().label() + " (" + r.ops.back().state + ")";
    } else {
      line += "waits in nothing; no operation recorded";
    }
    return line + (r.reason.empty() ? "" : "; written because: " + r.reason);
  }

  /// On each group, the members whose last collective is older than another's.
  void behind_lines(FlightDiagnosis& d) const {
    std::map<std::string, const FlightOp*> groups;  // group key -> any op naming it
    for (const auto& [rank, record] : by_rank_)
      for (const FlightOp& op : record->ops)
        if (!op.is_p2p()) groups.emplace(op.group_key, &op);
    for (const auto& [key, any] : groups) {
      std::map<int64_t, std::vector<int>> at;  // last seq -> members there
      std::map<int64_t, std::string> words;
      for (int m : any->group_ranks) {
        auto it = by_rank_.find(m);
        if (it == by_rank_.end()) continue;
        const GroupPlace p = place_on(*it->second, key);
        if (!p.known) continue;
        at[p.seq()].push_back(m);
        words[p.seq()] = place_words(p);
      }
      if (at.size() < 2) continue;
      std::string line = "behind on group '" + any->group + "' [world ranks " + join_ranks(any->group_ranks) + "]: ";
      const auto ahead = std::prev(at.end());
      for (auto it = at.begin(); it != ahead; ++it)
        line += ranks_words(it->second) + " at " + words[it->first] + ", ";
      line += "while " + ranks_words(ahead->second) + " reached " + words[ahead->first];
      d.lines.push_back(line);
    }
  }

  std::vector<Edge> edges_of(const FlightRecord& r, const FlightOp& w) const {
    std::vector<Edge> edges;
    auto missing_or = [&](int m, const std::string& otherwise) {
      return by_rank_.count(m) ? otherwise : std::string("wrote no record (dead, stopped, or killed first)");
    };
    if (w.is_p2p()) {
      if (w.peer < 0 || w.peer >= static_cast<int>(w.group_ranks.size())) return edges;
      const int m = w.group_ranks[static_cast<size_t>(w.peer)];
      edges.push_back({m, missing_or(m, "the peer of " + w.label())});
      return edges;
    }
    for (int m : w.group_ranks) {
      if (m == r.rank) continue;
      auto it = by_rank_.find(m);
      if (it == by_rank_.end()) {
        edges.push_back({m, missing_or(m, "")});
        continue;
      }
      const GroupPlace p = place_on(*it->second, w.group_key);
      if (p.known && p.seq() < w.seq)
        edges.push_back({m, "never entered " + w.label() + " (its last there: " + place_words(p) + ")"});
    }
    return edges;
  }

  /// Follows the edges from every waiting rank to the ends of the chains: a
  /// rank that waits for nobody (or wrote nothing) blocks the others; a
  /// waiting rank with no edge waits in an op every member reached (stuck);
  /// chains with neither end only loop: a deadlock.
  void blame(FlightDiagnosis& d) {
    if (d.waiting.empty()) {
      d.lines.push_back("verdict: no rank waits in an operation");
      return;
    }
    std::set<int> ends, stuck, seen;
    std::vector<int> stack(d.waiting.begin(), d.waiting.end());
    while (!stack.empty()) {
      const int at = stack.back();
      stack.pop_back();
      if (!seen.insert(at).second) continue;
      auto it = edges_.find(at);
      if (it == edges_.end()) ends.insert(at);
      else if (it->second.empty()) stuck.insert(at);
      else
        for (const Edge& e : it->second) stack.push_back(e.to);
    }
    d.blocking.assign(ends.begin(), ends.end());
    d.deadlock = ends.empty() && stuck.empty();
    for (int b : d.blocking) d.lines.push_back(verdict_line(b));
    if (d.deadlock)
      d.lines.push_back("verdict: deadlock: " + ranks_words(d.waiting) +
                        " wait for each other in a cycle: they call collectives or transfers in different orders");
    if (ends.empty() && !stuck.empty())
      d.lines.push_back("verdict: " + ranks_words(std::vector<int>(stuck.begin(), stuck.end())) +
                        " wait in operations every member reached: the operation itself is stuck (network, or an "
                        "overloaded peer)");
  }

  std::string verdict_line(int b) const {
    std::vector<int> waiters;
    std::string why;
    for (const auto& [rank, edges] : edges_)
      for (const Edge& e : edges)
        if (e.to == b) {
          waiters.push_back(rank);
          if (why.empty()) why = e.why;
        }
    std::string line = "verdict: " + ranks_words(waiters) + (waiters.size() == 1 ? " waits" : " wait") + " for " +
                       who(b) + ", which " + why;
    auto it = by_rank_.find(b);
    if (it != by_rank_.end()) {
      const FlightOp* own = waits_in(*it->second);
      line += own ? "; it waits in " + own->label() : "; it waits in nothing";
    }
    return line;
  }

  std::map<int, const FlightRecord*> by_rank_;
  std::map<int, std::vector<Edge>> edges_;
  int world_ = 0;
};

}  // namespace

std::string FlightOp::label() const {
  std::string out = op + " #" + std::to_string(seq) + " on group '" + group + "'";
  if (is_p2p() && peer >= 0 && peer < static_cast<int>(group_ranks.size()))
    out += std::string(op == "recv" ? " from" : " to") + " world rank " + std::to_string(group_ranks[static_cast<size_t>(peer)]);
  return out;
}

FlightRecord parse_flight_record(const std::string& text, const std::string& file) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    bad_record(file, std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object() || field<std::string>(j, "format", file) != "paratorch-flight-record")
    bad_record(file, "no \"format\": \"paratorch-flight-record\"");
  if (field<int>(j, "version", file) != 1) bad_record(file, "version is not 1");
  FlightRecord r;
  r.file = file;
  r.rank = field<int>(j, "rank", file);
  r.world_size = field<int>(j, "world_size", file);
  if (r.rank < 0 || r.world_size < 1 || r.rank >= r.world_size)
    bad_record(file, "rank " + std::to_string(r.rank) + " outside a world of " + std::to_string(r.world_size));
  r.host = field<std::string>(j, "host", file);
  r.reason = field<std::string>(j, "reason", file);
  r.dumped_us = field<int64_t>(j, "dumped_us", file);
  r.recorded = field<uint64_t>(j, "recorded", file);
  r.capacity = field<uint64_t>(j, "capacity", file);
  const json& entries = j.contains("entries") ? j.at("entries") : json();
  if (!entries.is_array()) bad_record(file, "field 'entries' is not a list");
  for (const json& e : entries) r.ops.push_back(parse_op(e, file));
  return r;
}

std::vector<FlightRecord> read_flight_records(const std::string& dir) {
  if (!fs::is_directory(dir))
    throw UsageError("paratorch inspect: no folder " + dir +
                     " (give the flight/ folder of a run: [train] out_dir + /flight, or PARATORCH_FLIGHT_DIR)");
  std::vector<FlightRecord> records;
  std::map<int, std::string> seen;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("rank-", 0) == 0 && entry.path().extension() == ".json") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& path : files) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    FlightRecord r = parse_flight_record(text.str(), path.string());
    if (!seen.emplace(r.rank, path.string()).second)
      throw UsageError("paratorch inspect: " + seen[r.rank] + " and " + path.string() + " are both rank " +
                       std::to_string(r.rank) + "'s record: keep the records of one run in the folder");
    records.push_back(std::move(r));
  }
  if (records.empty())
    throw UsageError("paratorch inspect: " + dir + " holds no rank-K.json flight record (a rank writes one when a "
                     "deadline passes, on SIGUSR1, or on a fatal error)");
  std::sort(records.begin(), records.end(), [](const FlightRecord& a, const FlightRecord& b) { return a.rank < b.rank; });
  return records;
}

std::string FlightDiagnosis::summary() const {
  auto list = [](const std::vector<int>& v) { return v.empty() ? std::string("none") : join_ranks(v); };
  return "inspect: waiting=" + list(waiting) + " blocking=" + list(blocking) + " missing=" + list(missing) +
         " deadlock=" + (deadlock ? "yes" : "no");
}

FlightDiagnosis diagnose_flight(const std::vector<FlightRecord>& records) { return Diagnoser(records).run(); }

}  // namespace paratorch::report
