"""Device diagnostics, fourteenth session (the script as it ran, reformatted for ruff).

1. CUDA data into train(); 2. the eigen step's CPU route for Grams above 32 x 32; 3. the UNet training step
(part 3 never ran: the run's time limit came during part 2, at r = 128).
"""
import sys
import time

import torch

from learned_manifold.geometry import _small_eigh, eigenpairs
from learned_manifold_training.data.blobs import Blobs
from learned_manifold_training.trainer import TrainConfig, train

dev = torch.device("cuda")


def sync_time(fn, n=3):
    fn()
    torch.cuda.synchronize()
    t = []
    for _ in range(n):
        s = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        t.append(time.perf_counter() - s)
    return sorted(t)[len(t) // 2]


print("== 1. train() on a CUDA tensor", flush=True)
try:
    blobs = Blobs(8)
    x = blobs.sample(2000, generator=torch.Generator().manual_seed(0)).to(dev)
    r = train(x, TrainConfig(steps=50, rank=4, backbone="mlp", checkpoint_every=0, val_points=200),
              progress=False, device=dev)
    print("ok", r.samples_per_second)
except Exception as e:  # noqa: BLE001
    print("FAILED", type(e).__name__, e)

print("== 2. eigen step, batch 8192 Grams", flush=True)
for r in (16, 32, 33, 64, 128):
    A = torch.randn(8192, 64 if r <= 64 else 256, r, device=dev)
    g = (A.transpose(1, 2) @ A).double()
    direct = sync_time(lambda g=g: torch.linalg.eigh(g), n=1 if r > 32 else 3)
    routed = sync_time(lambda g=g: _small_eigh(g))
    full = sync_time(lambda A=A: eigenpairs(A))
    print(f"r={r}: cuda eigh {direct*1e3:.1f} ms, _small_eigh {routed*1e3:.1f} ms, eigenpairs {full*1e3:.1f} ms",
          flush=True)

print("== 3. UNet training on blobs 16x16", flush=True)
blobs = Blobs(16)
x = blobs.sample(10000, generator=torch.Generator().manual_seed(2)).reshape(-1, 1, 16, 16)
for name, kw in (("default", {}), ("fp32", {"precision": "fp32"})):
    times = {}
    for steps in (20, 60):
        s = time.perf_counter()
        res = train(x, TrainConfig(steps=steps, rank=4, backbone="auto", checkpoint_every=0, val_points=500, **kw),
                    progress=False, device=dev)
        times[steps] = time.perf_counter() - s
    per_step = (times[60] - times[20]) / 40 * 1e3
    print(f"{name}: 20 steps {times[20]:.1f} s, 60 steps {times[60]:.1f} s -> {per_step:.0f} ms/step;"
          f" precision {res.precision}", flush=True)
from torch.profiler import ProfilerActivity, profile  # noqa: E402

with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    train(x, TrainConfig(steps=30, rank=4, backbone="auto", checkpoint_every=0, val_points=500, precision="fp32"),
          progress=False, device=dev)
print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=30, max_name_column_width=60))
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60))
sys.exit(0)
