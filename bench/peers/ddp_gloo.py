"""PyTorch DDP over gloo on the same `mlp` benchmark as bench/ddp.cpp.

Run:  mpirun -np 2 /usr/bin/python3 bench/peers/ddp_gloo.py
Uses Debian's python3-torch (1.13, the same libtorch kernels as paratorch),
one intra-op thread per rank, rank/world from OpenMPI's environment.
Model: Linear(784->512), 4 pre-LN residual blocks x + fc2(gelu(fc1(ln(x)))),
LN, Linear(512->10); global batch 64; AdamW(3e-4, wd 0.1). Prints the
median step time over 20 timed steps after 3 warm-up steps.
"""
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.ln(x))))


class Mlp(nn.Module):
    def __init__(self, d_in=784, d=512, layers=4, classes=10):
        super().__init__()
        self.inp = nn.Linear(d_in, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.inp(x)
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


def main():
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", 0))
    world = int(os.environ.get("OMPI_COMM_WORLD_SIZE", 1))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(1234)
    model = nn.parallel.DistributedDataParallel(Mlp())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    local = 64 // world
    g = torch.Generator().manual_seed(7 + rank)
    batches = [(torch.randn(local, 784, generator=g), torch.randint(0, 10, (local,), generator=g))
               for _ in range(23)]
    times = []
    for s, (x, y) in enumerate(batches):
        dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        t = torch.tensor([(time.perf_counter() - t0) * 1e3])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if s >= 3:
            times.append(t.item())
    if rank == 0:
        print(f"bench_ddp: mode=pytorch_ddp_gloo ranks={world} threads_per_rank={torch.get_num_threads()} "
              f"median_step_ms={statistics.median(times):.1f} min_step_ms={min(times):.1f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
