"""Data-parallel training (DDP, gloo, 2 CPU processes via torchrun) reaches the weights of one process in a short
run, the factor's repair after the last step included: the same batches, summed in another order (the rounding
grows with the steps: the README's "Many GPUs")."""

import socket
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from learned_manifold.model_file import read_metadata
from learned_manifold_training.cli import main

ARGS = ["train", "circle", "--num-points", "600", "--steps", "30", "--batch-size", "64", "--hidden", "16",
        "--depth", "1",
        "--rank", "2", "--device", "cpu", "--no-progress", "--seed", "3",
        "--precision", "fp32",  # fp32: bf16 rounds each rank's partial gradient, so only fp32 can match to 1e-5
        "--factor-refit", "1"]  # 30 steps fail the self-check: the factor's repair runs after them, kept


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
    single, double = tmp_path / "one.lmm", tmp_path / "two.lmm"
    assert main([*ARGS, "--out", str(single)]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
           f"--master-port={free_port()}", "-m", "learned_manifold_training.cli", *ARGS, "--out", str(double)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={
        **__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    refits = [read_metadata(p)["extra"]["validation"]["factor_refit"] for p in (single, double)]
    assert refits[0]["ran"] and refits[0]["kept"] and refits[1]["ran"] and refits[1]["kept"], refits
    assert refits[0]["steps"] == refits[1]["steps"] == 30
    a, b = load_file(single), load_file(double)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    # only rank 0 wrote: one model file, one training state, no stray temporary files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["one.lmm", "one.lmm.train-state.pt", "two.lmm", "two.lmm.train-state.pt"])


LAUNCH = """
import sys
from learned_manifold import precision as P
P.native_bf16 = lambda device: True  # the probe runs (a real forward + backward) on any CPU
from learned_manifold_training.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_precision_auto_probes_on_rank_0_and_every_rank_trains_in_its_choice(tmp_path):
    """The default ``--precision auto``: rank 0's probe (forward + backward) runs before the DDP wrapping and
    leaves no gradients, so both ranks reach step 0 alike; before, DDP stopped at step 0 ("gradient which is
    undefined, but still allreduced by DDP reducer")."""
    (tmp_path / "launch.py").write_text(LAUNCH)
    out = tmp_path / "auto.lmm"
    args = [*ARGS[:ARGS.index("--steps")], "--steps", "10", *ARGS[ARGS.index("--steps") + 2:]]
    args[args.index("--precision") + 1] = "auto"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
           f"--master-port={free_port()}", str(tmp_path / "launch.py"), *args, "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={
        **__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    extra = read_metadata(out)["extra"]
    assert extra["precision_probe"]["source"] == "measured", extra["precision_probe"]
    assert extra["precision"] == extra["precision_probe"]["choice"] in ("fp32", "bf16")


def test_rank0_refusing_the_output_stops_every_rank_at_once(tmp_path):
    """Only rank 0 checks ``--out``; its refusal must reach rank 1, which would otherwise wait in the first
    collective until torchrun killed it (30 s), and the existing file must be left as it was."""
    out = tmp_path / "taken.lmm"
    out.write_bytes(b"the user's file")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
           f"--master-port={free_port()}", "-m", "learned_manifold_training.cli", *ARGS, "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={
        **__import__("os").environ, "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - start
    assert proc.returncode != 0
    assert proc.stderr.count("already exists") == 1, proc.stderr[-3000:]  # said once, by rank 0
    assert seconds < 25, (seconds, proc.stderr[-3000:])  # not torchrun's 30 s kill of a waiting rank
    assert out.read_bytes() == b"the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.lmm"]
