"""The `gpt` model of bench/train.cpp in plain PyTorch, for its tokens/s ratio.

Run:  /usr/bin/python3 bench/peers/train_gpt.py
Uses Debian's python3-torch (1.13, the same libtorch kernels as paratorch).
The model is GPT-2 in nanoGPT's layout (wte, wpe, pre-LN blocks of fused-qkv
causal attention and a 4x tanh-GELU MLP, ln_f, lm_head tied to wte), the
demo shape (4 layers, d 256, 4 heads, seq 128, vocab 256), AdamW(3e-4,
wd 0.1) with PyTorch's default implementation. Batch BENCH_BATCH (16),
BENCH_STEPS (20) timed steps after 3 warm-up steps; prints the median.

The process is set up as paratorch's World sets up one rank, so that only the
training step differs: the same intra-op thread count (the cores this process
may run on, or BENCH_THREADS) for torch and for OpenBLAS's own pool, the same
idle-thread policies (OMP_WAIT_POLICY=passive, OPENBLAS_THREAD_TIMEOUT=16,
each unless set already) and the same glibc malloc settings.
BENCH_PEER_DEFAULTS=1 sets only the thread counts and leaves the idle-thread
policies and malloc as PyTorch has them out of the box.
Attention is nanoGPT's (scale, masked_fill, softmax); BENCH_PEER_ATTN=baddbmm
uses paratorch's formulation instead (mask and scale inside one baddbmm).
"""
import ctypes
import math
import os
import statistics
import time


def setup_process():
    """Mirrors World, before torch loads libgomp and OpenBLAS (both read their
    environment when loaded)."""
    threads = int(os.environ.get("BENCH_THREADS", "0")) or max(1, len(os.sched_getaffinity(0)))
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)  # Debian's pthread OpenBLAS sizes its pool from it
    if os.environ.get("BENCH_PEER_DEFAULTS", "0") == "0":
        if "GOMP_SPINCOUNT" not in os.environ:
            os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8  # glibc's mallopt codes
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 30)
        libc.mallopt(m_arena_max, 1)
    return threads


THREADS = setup_process()
FUSED_ATTENTION = os.environ.get("BENCH_PEER_ATTN", "nanogpt") == "baddbmm"

import torch  # noqa: E402  (after setup_process, see there)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Attention(nn.Module):
    def __init__(self, d, heads, seq_len):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        future = torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1)
        self.register_buffer("future", future, persistent=False)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        scale = 1.0 / math.sqrt(c // self.heads)
        if FUSED_ATTENTION:  # paratorch's formulation: one baddbmm adds the mask and scales
            mask = torch.zeros(t, t).masked_fill(self.future[:t, :t], float("-inf"))
            q, k = q.reshape(b * self.heads, t, -1), k.reshape(b * self.heads, t, -1)
            att = torch.baddbmm(mask, q, k.transpose(1, 2), alpha=scale).view(b, self.heads, t, t).softmax(dim=-1)
        else:  # nanoGPT's
            att = (q @ k.transpose(-2, -1)) * scale
            att = att.masked_fill(self.future[:t, :t], float("-inf")).softmax(dim=-1)
        return self.c_proj((att @ v).transpose(1, 2).contiguous().view(b, t, c))


class Mlp(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d)
        self.c_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, d, heads, seq_len):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads, seq_len)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = Mlp(d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt(nn.Module):
    def __init__(self, layers=4, d=256, heads=4, seq_len=128, vocab=256):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, d), wpe=nn.Embedding(seq_len, d),
            h=nn.ModuleList(Block(d, heads, seq_len) for _ in range(layers)), ln_f=nn.LayerNorm(d)))
        for name, p in self.named_parameters():  # GPT-2 init, as paratorch's init_spec
            if ".ln_" in name or "ln_f" in name:
                nn.init.constant_(p, 1.0 if name.endswith(".weight") else 0.0)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
            else:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        tr = self.transformer
        x = tr.wte(idx) + tr.wpe(torch.arange(idx.shape[1]))
        for block in tr.h:
            x = block(x)
        return F.linear(tr.ln_f(x), tr.wte.weight)  # lm_head tied to wte


def kjv_windows(batch, seq_len, steps, seed=1234):
    """Random byte windows from the training 90% of the KJV text paratorch caches."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    with open(os.path.join(cache, "paratorch", "kjv.txt"), "rb") as f:
        text = f.read()
    train = torch.frombuffer(bytearray(text[: len(text) * 9 // 10]), dtype=torch.uint8).long()
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, train.numel() - seq_len - 1, (batch, 1), generator=g)
        window = train[starts + torch.arange(seq_len + 1)]
        yield window[:, :-1].contiguous(), window[:, 1:].contiguous()


def main():
    batch = int(os.environ.get("BENCH_BATCH", "16"))
    steps, warmup, seq_len = int(os.environ.get("BENCH_STEPS", "20")), 3, 128
    torch.set_num_threads(THREADS)
    torch.manual_seed(1234)
    model = Gpt(seq_len=seq_len)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    times, phases, loss = [], [], None
    for s, (x, y) in enumerate(kjv_windows(batch, seq_len, warmup + steps)):
        t0 = time.perf_counter()
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        t_forward = time.perf_counter()
        loss.backward()
        t_backward = time.perf_counter()
        opt.step()
        t_end = time.perf_counter()
        if s >= warmup:
            times.append((t_end - t0) * 1e3)
            phases.append(((t_forward - t0) * 1e3, (t_backward - t_forward) * 1e3, (t_end - t_backward) * 1e3))
    med = statistics.median(times)
    print(f"bench_train: impl=pytorch median_step_ms={med:.1f} tokens_per_s={batch * seq_len / med * 1e3:.0f} "
          f"threads={torch.get_num_threads()} batch={batch} steps={steps} final_loss={loss.item():.3f} "
          f"omp_wait={os.environ.get('OMP_WAIT_POLICY', 'default')} "
          f"blas_timeout={os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'default')} attn={'baddbmm' if FUSED_ATTENTION else 'nanogpt'}")
    if os.environ.get("BENCH_PHASES", "0") != "0":
        fwd, bwd, optim = (statistics.median(p[i] for p in phases) for i in range(3))
        print(f"bench_train: phases impl=pytorch forward_ms={fwd:.1f} backward_ms={bwd:.1f} optimizer_ms={optim:.1f}")


if __name__ == "__main__":
    main()
