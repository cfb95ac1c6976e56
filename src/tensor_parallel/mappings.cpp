// src/tensor_parallel/mappings.cpp — see mappings.h.
//
// Each mapping is a torch::autograd::Function. The communicator travels to
// backward as a raw pointer in saved_data (an IValue cannot hold it); the tp
// communicator outlives every graph built with it (ProcessGroups owns it).
#include "tensor_parallel/mappings.h"

#include "report/trace.h"

#include <atomic>

namespace paratorch::tensor_parallel {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::atomic<int64_t> g_comm_us{0};

// Traces one tp collective and adds its wall time to g_comm_us.
class CommTimer {
 public:
  explicit CommTimer(const char* name) : span_(name, "tp"), start_(report::Tracer::now_us()) {}
  ~CommTimer() { g_comm_us += report::Tracer::now_us() - start_; }

 private:
  report::Tracer::Span span_;
  int64_t start_;
};

void save_comm(AutogradContext* ctx, Communicator* comm, int64_t dim) {
  ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
  ctx->saved_data["dim"] = dim;
}
Communicator& comm_of(AutogradContext* ctx) {
  return *reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
}
int64_t dim_of(AutogradContext* ctx) { return ctx->saved_data["dim"].toInt(); }

torch::Tensor all_reduced(const torch::Tensor& x, Communicator& comm) {
  CommTimer timer("tp.all_reduce");
  auto out = x.contiguous().clone();
  comm.all_reduce(out, ReduceOp::kSum);
  return out;
}

struct CopyToTp : torch::autograd::Function<CopyToTp> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Communicator* comm) {
    save_comm(ctx, comm, 0);
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {all_reduced(g[0], comm_of(ctx)), torch::Tensor()};
  }
};

struct ReduceFromTp : torch::autograd::Function<ReduceFromTp> {
  static torch::Tensor forward(AutogradContext*, const torch::Tensor& x, Communicator* comm) {
    return all_reduced(x, *comm);
  }
  static variable_list backward(AutogradContext*, variable_list g) { return {g[0], torch::Tensor()}; }
};

struct Split : torch::autograd::Function<Split> {  // split | all-gather
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Communicator* comm, int64_t dim) {
    save_comm(ctx, comm, dim);
    return split_along(x, *comm, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {all_gather_along(g[0], comm_of(ctx), dim_of(ctx)), torch::Tensor(), torch::Tensor()};
  }
};

struct Gather : torch::autograd::Function<Gather> {  // all-gather | split
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Communicator* comm, int64_t dim) {
    save_comm(ctx, comm, dim);
    return all_gather_along(x, *comm, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {split_along(g[0], comm_of(ctx), dim_of(ctx)), torch::Tensor(), torch::Tensor()};
  }
};

struct GatherReduceScatter : torch::autograd::Function<GatherReduceScatter> {  // all-gather | reduce-scatter
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Communicator* comm, int64_t dim) {
    save_comm(ctx, comm, dim);
    return all_gather_along(x, *comm, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {reduce_scatter_along(g[0], comm_of(ctx), dim_of(ctx)), torch::Tensor(), torch::Tensor()};
  }
};

struct ReduceScatterGather : torch::autograd::Function<ReduceScatterGather> {  // reduce-scatter | all-gather
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Communicator* comm, int64_t dim) {
    save_comm(ctx, comm, dim);
    return reduce_scatter_along(x, *comm, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {all_gather_along(g[0], comm_of(ctx), dim_of(ctx)), torch::Tensor(), torch::Tensor()};
  }
};

int64_t tp_dim(const torch::Tensor& x, int64_t dim) { return dim < 0 ? dim + x.dim() : dim; }

}  // namespace

torch::Tensor all_gather_along(const torch::Tensor& x, Communicator& comm, int64_t dim) {
  CommTimer timer("tp.all_gather");
  auto in = x.contiguous();
  std::vector<int64_t> shape{comm.size()};
  shape.insert(shape.end(), in.sizes().begin(), in.sizes().end());
  auto out = torch::empty(shape, in.options());
  comm.all_gather(out, in);
  return torch::cat(out.unbind(0), tp_dim(x, dim));
}

torch::Tensor reduce_scatter_along(const torch::Tensor& x, Communicator& comm, int64_t dim) {
  CommTimer timer("tp.reduce_scatter");
  TORCH_CHECK(x.size(tp_dim(x, dim)) % comm.size() == 0, "reduce_scatter_along: dim ", dim, " of size ",
              x.size(tp_dim(x, dim)), " does not split over ", comm.size(), " ranks");
  auto stacked = torch::stack(x.chunk(comm.size(), tp_dim(x, dim))).contiguous();
  auto out = torch::empty(stacked.sizes().slice(1), x.options());
  comm.reduce_scatter(out, stacked, ReduceOp::kSum);
  return out;
}

torch::Tensor split_along(const torch::Tensor& x, const Communicator& comm, int64_t dim) {
  TORCH_CHECK(x.size(tp_dim(x, dim)) % comm.size() == 0, "split_along: dim ", dim, " of size ",
              x.size(tp_dim(x, dim)), " does not split over ", comm.size(), " ranks");
  return x.chunk(comm.size(), tp_dim(x, dim))[static_cast<size_t>(comm.rank())].contiguous();
}

torch::Tensor copy_to_tp(const torch::Tensor& x, const TensorParallelContext& tp) {
  return tp.active() ? CopyToTp::apply(x, tp.comm.get()) : x;
}
torch::Tensor reduce_from_tp(const torch::Tensor& x, const TensorParallelContext& tp) {
  return tp.active() ? ReduceFromTp::apply(x, tp.comm.get()) : x;
}
torch::Tensor scatter_to_tp(const torch::Tensor& x, const TensorParallelContext& tp) {
  return tp.active() ? Split::apply(x, tp.comm.get(), tp_dim(x, -1)) : x;
}
torch::Tensor gather_from_tp(const torch::Tensor& x, const TensorParallelContext& tp) {
  return tp.active() ? Gather::apply(x, tp.comm.get(), tp_dim(x, -1)) : x;
}
torch::Tensor scatter_to_sequence(const torch::Tensor& x, const TensorParallelContext& tp, int64_t dim) {
  return tp.active() ? Split::apply(x, tp.comm.get(), tp_dim(x, dim)) : x;
}
torch::Tensor gather_from_sequence(const torch::Tensor& x, const TensorParallelContext& tp, int64_t dim) {
  return tp.active() ? GatherReduceScatter::apply(x, tp.comm.get(), tp_dim(x, dim)) : x;
}
torch::Tensor reduce_scatter_to_sequence(const torch::Tensor& x, const TensorParallelContext& tp, int64_t dim) {
  return tp.active() ? ReduceScatterGather::apply(x, tp.comm.get(), tp_dim(x, dim)) : x;
}

double tp_comm_seconds() { return static_cast<double>(g_comm_us.load()) * 1e-6; }
void reset_tp_comm_seconds() { g_comm_us = 0; }

}  // namespace paratorch::tensor_parallel

namespace paratorch::tensor_parallel {
void timed_all_reduce(torch::Tensor t, Communicator& comm, ReduceOp op) {
  CommTimer timer("tp.all_reduce");
  comm.all_reduce(std::move(t), op);
}
}  // namespace paratorch::tensor_parallel
