"""`KNNCDC` takes its queries in blocks of at most `KNNCDC.QUERY_NUMBERS` gathered numbers (``rows · k · D``): the
answers of `project`, `neighbours`, `cutoff_weight` and `effective_neighbours` are those of one block, bit for bit,
gradients included, and their memory no longer grows with the batch (tester F: the neighbour check's ``project`` of
500 points at ``k = 256``, ``D = 1024`` peaked at 1.4 GiB)."""

import os
import subprocess
import sys
import textwrap

import torch

from learned_manifold.metrics import KNNCDC

F64 = torch.float64


def _fields(rows: int) -> tuple[KNNCDC, KNNCDC]:
    """The same field twice on 300 points of R⁵ (``k = 16``): with the default blocks (one block for the test's
    batch) and with blocks of ``rows`` queries."""
    data = torch.randn(300, 5, dtype=F64, generator=torch.Generator().manual_seed(0))
    whole, blocked = KNNCDC(data, k=16, sigma=0.4), KNNCDC(data, k=16, sigma=0.4)
    blocked.QUERY_NUMBERS = rows * 16 * 5
    return whole, blocked


def test_blocked_answers_equal_the_whole_batchs_bit_for_bit():
    """37 queries in blocks of 3 (the last one short) give exactly the one-block answers."""
    whole, blocked = _fields(3)
    assert len(blocked._blocks(torch.zeros(37, 5, dtype=F64))) == 13
    y = torch.randn(37, 5, dtype=F64, generator=torch.Generator().manual_seed(1))
    for method in ("project", "cutoff_weight", "effective_neighbours"):
        assert torch.equal(getattr(blocked, method)(y), getattr(whole, method)(y)), method
    for got, want in zip(blocked.neighbours(y), whole.neighbours(y), strict=True):
        assert torch.equal(got, want)


def test_blocked_projection_keeps_its_gradient():
    """``project`` stays differentiable in the queries through the blocks: the same gradient as one block, and a
    nonzero one (the weights move with the query)."""
    whole, blocked = _fields(2)
    y = torch.randn(7, 5, dtype=F64, generator=torch.Generator().manual_seed(2))
    grads = []
    for field in (whole, blocked):
        q = y.clone().requires_grad_(True)
        field.project(q).pow(2).sum().backward()
        grads.append(q.grad)
    assert torch.equal(grads[0], grads[1]) and bool(grads[0].abs().sum() > 0)


def test_empty_batch_gives_empty_answers():
    whole, blocked = _fields(3)
    assert blocked.project(torch.zeros(0, 5, dtype=F64)).shape == (0, 5)
    assert blocked.cutoff_weight(torch.zeros(0, 5, dtype=F64)).shape == (0,)


_PEAK = textwrap.dedent("""
    import resource, torch
    from learned_manifold.metrics import KNNCDC
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    field = KNNCDC(torch.randn(1000, 1024, generator=g), k=128, sigma=1.0)
    field.QUERY_NUMBERS = 2**20  # blocks of 8 queries: 4 MiB of neighbours each
    y = torch.randn(256, 1024, generator=g)
    field.project(y[:8])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    field.project(y)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
""")


def test_projection_memory_is_bounded_by_the_block_not_the_batch():
    """256 queries at ``k = 128``, ``D = 1024`` (float32): their neighbours ``(256, 128, 1024)`` are 128 MiB, and the
    unblocked projection raised the peak resident memory by about three times that. In blocks of 8 queries the
    peak rises by less than half of one such copy (measured in a fresh interpreter, ``ru_maxrss`` in KiB)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _PEAK], capture_output=True, text=True, timeout=120, env=env,
                         check=True)
    assert int(out.stdout.split()[-1]) < 64 * 1024
