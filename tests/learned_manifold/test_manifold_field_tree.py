"""Optimiser steps that bump no version counter (`learned_manifold.manifold_field_tree.after_optimizer_step`):
torch's fused optimisers fine-tuning a field reach the cache's next answer, steps that touch no field keep the cache
and walk no kept tree, and the process-wide hook never breaks a user's ``step`` (threads, ``torch.compile``)."""

import sys
import threading
import time
import weakref

import pytest
import torch

import learned_manifold.manifold_field_tree as field_tree_module
from learned_manifold import LearnedDataManifold, RiemannianSGD
from learned_manifold.manifold_field_key import field_key
from learned_manifold.manifold_field_tree import _TREES, after_optimizer_step
from learned_manifold.metrics import CoMetricField


class Net(CoMetricField):
    """A rank-2 field whose factor is a linear map of the point: ``A(x) = reshape(W x + b)``; counts its calls (in a
    list, which the cache key does not read: a counting int attribute would be a setting that changes)."""

    low_rank, dim = True, 4

    def __init__(self):
        super().__init__()
        self.net, self.calls = torch.nn.Linear(4, 8), [0]

    def factor(self, x):
        self.calls[0] += 1
        return self.net(x).reshape(-1, 4, 2)


class DataSGD(torch.optim.Optimizer):
    """Another library's optimiser: its step writes through ``p.data``, which bumps no version counter (a documented
    limit: `LearnedDataManifold.clear_cache`)."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.data.add_(p.grad, alpha=-group["lr"])


def _manifold():
    torch.manual_seed(0)
    M = LearnedDataManifold(Net(), tangent_dim=2)
    x, u = torch.randn(5, 4), torch.randn(5, 4)
    with torch.no_grad():
        M.egrad2rgrad(x, u)  # cached
    return M, x, u


def _fresh(M, x, u):
    with torch.no_grad():
        return LearnedDataManifold(M.field, tangent_dim=2).egrad2rgrad(x, u)


def _set_grads(params):
    for p in params:
        p.grad = torch.ones_like(p)


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.Adam(ps, lr=0.1, fused=True), lambda ps: torch.optim.AdamW(ps, lr=0.1, fused=True),
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, fused=True), lambda ps: torch.optim.Adagrad(ps, fused=True),
], ids=["Adam", "AdamW", "SGD", "Adagrad"])
def test_a_step_on_the_fields_network_that_bumps_no_version_is_seen(make):
    """Fused kernels leave the weights' version counters as they were: the cache had answered with the factor of
    the old weights (0.53 off after three steps of joint training with fused Adam)."""
    M, x, u = _manifold()
    params = list(M.field.net.parameters())
    opt = make(params)
    _set_grads(params)
    versions = [p._version for p in params]
    opt.step()
    assert [p._version for p in params] == versions  # (what makes the step invisible to version counters)
    with torch.no_grad():
        torch.testing.assert_close(M.egrad2rgrad(x, u), _fresh(M, x, u), atol=0, rtol=0)


def test_a_fused_step_on_a_tensor_sharing_a_weights_memory_is_seen():
    """``net.weight.data = W`` with ``W`` stepped by a fused optimiser: the step writes into the weight's storage."""
    M, x, u = _manifold()
    W = torch.nn.Parameter(M.field.net.weight.detach().clone())
    M.field.net.weight.data = W.data
    with torch.no_grad():
        M.egrad2rgrad(x, u)
    opt = torch.optim.Adam([W], lr=0.1, fused=True)
    _set_grads([W])
    opt.step()
    with torch.no_grad():
        torch.testing.assert_close(M.egrad2rgrad(x, u), _fresh(M, x, u), atol=0, rtol=0)


def test_steps_that_touch_no_field_keep_the_cache():
    """A fused optimiser on another network and Riemannian steps on the points count nothing on the field: a
    parameter's factor is still evaluated once per step."""
    M, x, u = _manifold()
    other = torch.nn.Linear(3, 3)
    fused = torch.optim.Adam(other.parameters(), lr=0.1, fused=True)
    p = torch.nn.Parameter(x.clone())
    opt = RiemannianSGD([p], manifold=M, lr=0.1, momentum=0.5)
    tree = _TREES[M.field]
    for _ in range(3):
        opt.zero_grad()
        p.sum().backward()
        opt.step()
        _set_grads(other.parameters())
        fused.step()
    assert tree.unversioned == 0 and _TREES[M.field] is tree
    calls = M.field.calls[0]
    opt.zero_grad()
    p.sum().backward()
    opt.step()
    assert M.field.calls[0] == calls + 1  # (the new point's factor only: the step's start was cached)


def test_clear_cache_after_a_foreign_optimiser_writing_through_data():
    """Only ``fused`` groups are looked at: another library's step through ``p.data`` needs ``clear_cache``."""
    M, x, u = _manifold()
    params = list(M.field.net.parameters())
    opt = DataSGD(params, lr=0.1)
    _set_grads(params)
    opt.step()
    M.clear_cache()
    with torch.no_grad():
        torch.testing.assert_close(M.egrad2rgrad(x, u), _fresh(M, x, u), atol=0, rtol=0)


class _CountingDict(dict):
    """A kept-tree dict that counts the passes over it (``copy``, ``items``, ``values``, iteration)."""

    passes = 0

    def _count(self):
        _CountingDict.passes += 1

    def copy(self):
        self._count()
        return dict.copy(self)

    def items(self):
        self._count()
        return dict.items(self)

    def values(self):
        self._count()
        return dict.values(self)

    def __iter__(self):
        self._count()
        return dict.__iter__(self)


def test_a_fused_step_touching_no_field_walks_no_kept_tree(monkeypatch):
    """The cost guard: a fused step on another network tests its parameters' storages against the kept trees' and
    walks no tree (a pass over the trees per step cost +20% to ×2.8 on fused steps); one on the field's network
    walks them and counts the step."""
    M, x, u = _manifold()
    counting = weakref.WeakKeyDictionary()
    counting.data = _CountingDict(_TREES.data)
    monkeypatch.setattr(field_tree_module, "_TREES", counting)
    other = torch.nn.Linear(3, 3)
    fused = torch.optim.Adam(other.parameters(), lr=0.1, fused=True)
    _set_grads(other.parameters())
    fused.step()  # (where a dead field's memory was given to `other`, its stale key costs this one walk)
    _CountingDict.passes = 0
    for _ in range(3):
        fused.step()
    assert _CountingDict.passes == 0
    mine = torch.optim.Adam(M.field.net.parameters(), lr=0.1, fused=True)
    _set_grads(M.field.net.parameters())
    tree = counting[M.field]
    mine.step()
    assert _CountingDict.passes >= 1 and tree.unversioned == 1


def test_the_hook_never_raises_into_step_and_counts_on_error():
    """Whatever goes wrong while looking at a fused step (here a parameter that is not a tensor), the step is counted
    on every kept tree and nothing is raised out of the user's ``step``."""
    M, x, u = _manifold()
    tree = _TREES[M.field]

    class Broken:
        param_groups = [{"fused": True, "params": [object()]}]

    after_optimizer_step(Broken(), (), {})
    assert tree.unversioned == 1


def test_a_fused_step_while_another_thread_makes_fields_never_raises():
    """One thread steps a fused Adam on an unrelated model while another makes fields and reads their keys (a
    manifold queried in a loader thread): no ``step`` raises (the kept trees are copied in one C call)."""
    keep = [torch.nn.Linear(2, 2) for _ in range(100)]
    for f in keep:
        field_key(f)
    model = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(20)])
    opt = torch.optim.Adam(model.parameters(), fused=True)
    _set_grads(model.parameters())
    stop, errors, steps = [False], [], 0

    def make_fields():
        while not stop[0]:
            fields = [torch.nn.Linear(2, 2) for _ in range(20)]
            for f in fields:
                field_key(f)
            del fields  # (they die: removals during the other thread's pass)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    maker = threading.Thread(target=make_fields)
    maker.start()
    try:
        start = time.perf_counter()
        while time.perf_counter() - start < 1.0:
            try:
                opt.step()
                steps += 1
            except RuntimeError as error:
                errors.append(error)
    finally:
        stop[0] = True
        maker.join()
        sys.setswitchinterval(interval)
    assert steps > 0 and errors == []


def test_a_users_own_optimiser_compiles_with_fullgraph_after_a_manifold_query():
    """The hook looks at ``fused`` groups only: a user's optimiser (its own ``step``) reaches no
    ``torch.compiler.disable``d function, so ``fullgraph=True`` compiles once a field's key was read."""
    kept = torch.nn.Linear(2, 2)
    field_key(kept)

    class MySGD(torch.optim.Optimizer):
        def __init__(self, params, lr):
            super().__init__(params, {"lr": lr})

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    p.add_(p.grad, alpha=-group["lr"])

    model = torch.nn.Linear(4, 1)
    opt = MySGD(model.parameters(), lr=0.1)
    _set_grads(model.parameters())
    before = model.weight.detach().clone()
    step = torch.compile(lambda: opt.step(), fullgraph=True, backend="eager")
    step()
    torch.testing.assert_close(model.weight.detach(), before - 0.1)


def test_a_fused_step_on_a_weights_old_storage_between_two_data_assignments_is_seen():
    """``w.data = W``, a fused step on ``w``'s old storage, then ``w.data`` back to it: every address is as when the
    first answer was cached, so only the count `note_storages` adds at each new address makes that entry miss."""
    M, x, u = _manifold()
    weight = M.field.net.weight
    P = torch.nn.Parameter(weight.detach())  # (shares the weight's storage)
    weight.data = weight.detach().clone()
    with torch.no_grad():
        M.egrad2rgrad(torch.randn(5, 4), u)  # (other points: the first entry stays)
    opt = torch.optim.Adam([P], lr=0.1, fused=True)
    _set_grads([P])
    opt.step()
    weight.data = P.detach()
    with torch.no_grad():
        torch.testing.assert_close(M.egrad2rgrad(x, u), _fresh(M, x, u), atol=0, rtol=0)
