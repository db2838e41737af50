"""How `LearnedDataManifold` gets the field's factor at its points (SPEC §5): through its `FactorCache`, with the
eigen step and the decomposition checks, and with one clear error where autograd cannot differentiate the field.

`CachedFactors` is the manifold's mixin for it. Its subclass provides ``field`` (the `CoMetricField`) and
``tangent_dim``. The cache's rules (what a hit needs, what the key reads) are `learned_manifold.manifold_cache`'s.

Checks (`manifold_checks.check_decomposition`: non-finite factors, dropped real directions, a ``tangent_dim`` that
splits a cluster; one host sync each) run at the 1st, 2nd, 4th, 8th, … decomposition of each *point set*: an
optimiser's parameter is one (`FactorCache`: a query at new points of the shape of the points it has just reused
continues the run, as an optimiser's next step does); a query at new points of the shape of a cold entry never
reused (an evaluation loop at fresh batches) continues that entry's run and replaces it (one entry, checked at
the loop's 1st, 2nd, 4th, … query), and restarts the run where it is reused after all (an optimiser's step reads
its parameter's point several times); any other query at new points starts a new run. So a new optimisation (new
parameters) on a manifold in long use is checked at its first step. Checking every
decomposition added 15–25% to an optimiser step's `egrad2rgrad` (batch 64, a small sphere model); a problem that
persists is still named, at a cost that vanishes over a long run. Queries with grad enabled, which bypass the
cache, count on one run per manifold (their 1st, 2nd, 4th, … decomposition).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor

from .geometry import Eigenpairs, eigenpairs
from .manifold_cache import (
    FactorCache,
    FieldKey,
    cache_bypassed,
    cache_entry,
    field_key,
    field_settings,
    forward_mode,
    release_tree,
    vmapped,
)
from .manifold_checks import check_decomposition
from .manifold_storage_refs import step_points
from .metrics.base import CoMetricField
from .metrics.field_checks import inference_tensors

__all__ = ["CachedFactors", "inference_built"]

_OUTSIDE = object()  # (no enclosing `CachedFactors.one_step`)
_EVERY = object()  # (inside `CachedFactors.one_step` of a landing manifold: the key is read at every lookup)

_STEP = threading.local()  # .keys: id(manifold) -> in its `CachedFactors.one_step`: the field key read there, None
#                            (read it at the next lookup) or _EVERY; .owners: id(manifold) -> (parameter, holder)
_SAVED_INFERENCE = "Inference tensors cannot be saved for backward"  # (torch's message, 2.0 to at least 2.13)


@contextmanager
def inference_built(field: CoMetricField) -> Iterator[None]:
    """Run a computation on ``field`` with autograd recording, and where it fails because the field holds tensors
    made under ``torch.inference_mode()`` (built or loaded inside it), raise one error naming that and the fix in
    place of torch's (which names neither the field nor the library). `curvature` and `geodesic` copy such a field
    (`metrics.field_checks.autograd_ready`); the manifold's methods, called at every optimiser step, do not.

    Raises:
        RuntimeError: the field holds inference tensors that autograd had to save for backward."""
    try:
        yield
    except RuntimeError as err:
        held = inference_tensors(field) if _SAVED_INFERENCE in str(err) else []
        if not held:
            raise
        raise RuntimeError(
            f"LearnedDataManifold: the field {type(field).__name__} holds tensors made under torch.inference_mode() "
            f"({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}), which autograd cannot save for backward, "
            f"and this call differentiates through the field (points that require grad): build or load the "
            f"manifold outside torch.inference_mode() (torch.no_grad() is fine, and the manifold may still be "
            f"queried inside inference_mode), or use a copy made outside it (with torch.inference_mode(False): "
            f"M = copy.deepcopy(M))") from err


class CachedFactors:
    """The factor (and eigenpairs) of `LearnedDataManifold`'s field at flat points ``(B, D)``, cached
    (`FactorCache`) under ``torch.no_grad()`` outside forward-mode AD, and checked (module docstring)."""

    field: CoMetricField
    tangent_dim: int | None

    def _factors(self) -> FactorCache:
        """The manifold's `FactorCache` (made on first use: a pickle or copy holds none, nor do older pickles)."""
        cache = self.__dict__.get("_factor_cache")
        if cache is None:
            cache = self.__dict__["_factor_cache"] = FactorCache()
        return cache

    @property
    def _cache(self) -> dict | None:
        """The most recently used cache entry (``None`` when empty). Assigning an entry adds it (`FactorCache.add`:
        landing stores the one at its landed points so); assigning ``None`` (landing under forward-mode AD, which
        makes no entry) changes nothing: `clear_cache` empties the cache."""
        return self._factors().latest

    @_cache.setter
    def _cache(self, entry: dict | None) -> None:
        if entry is not None:
            self._factors().add(entry)

    def _factor_at(self, xf: Tensor) -> Tensor:
        """The field's factor ``(B, D, r)`` at the flat points ``xf`` ``(B, D)``, reused while the point is unchanged
        (no-grad only)."""
        return self._cached(xf)["A"]

    def _factor_and_pairs_at(self, xf: Tensor) -> tuple[Tensor, Eigenpairs]:
        """The factor at ``xf`` ``(B, D)`` and its eigenpairs, each computed once per cache entry (no-grad only), and
        checked (`check_decomposition`: one host sync) at the 1st, 2nd, 4th, 8th, … decomposition of each point set
        (module docstring). A cached call costs nothing more. Its warnings point at the user's line
        (`user_warnings.warn_user`), however deep the call (an optimiser's step, ``retr`` through ``proju``)."""
        entry = self._cached(xf)
        self._check_tangent_dim(entry["A"].shape[-1])  # (at a cached entry too: ``tangent_dim`` may have changed)
        pairs = entry.get("pairs")  # (a local: another thread may fill the shared entry's pairs meanwhile)
        if pairs is None:
            pairs = entry["pairs"] = eigenpairs(entry["A"])
        if not entry.get("checked"):
            entry["checked"] = True  # (first: with warnings as errors the next call does not raise again)
            count = entry.get("count")
            if count is None:  # (grad enabled, no cache entry: one run per manifold; older pickles lack the counter)
                count = self._decompositions = self.__dict__.get("_decompositions", 0) + 1
            if count & (count - 1) == 0:
                check_decomposition(type(self.field).__name__, xf, pairs, self.tangent_dim)
        return entry["A"], pairs

    def _field_factor(self, xf: Tensor) -> Tensor:
        """``self.field.factor(xf)`` ``(B, D, r)``, refusing points batched by ``torch.func.vmap`` with one clear error
        (`learned_manifold.manifold`'s docstring) instead of torch's internal one from the field's data-dependent
        steps, and naming a field built under ``torch.inference_mode()`` where a gradient is wanted
        (`inference_built`)."""
        if vmapped(xf):
            raise RuntimeError("LearnedDataManifold does not support torch.func.vmap over the points: the field's "
                               "factor, its eigen step and the k-NN search branch on the data; pass the points as "
                               "one batch (B, *data_shape) instead (vmap over the vectors at fixed points works)")
        self._field_ran()
        with inference_built(self.field):
            return self.field.factor(xf)

    def _check_tangent_dim(self, rank: int) -> None:
        """A ``ValueError`` naming ``tangent_dim`` if it exceeds ``rank``, the width of a factor the field gave."""
        if self.tangent_dim is not None and self.tangent_dim > rank:
            raise ValueError(f"tangent_dim = {self.tangent_dim} exceeds the rank r = {rank} of the factor "
                             f"{type(self.field).__name__} returns: its tangent spaces have at most {rank} dimensions")

    @contextmanager
    def one_step(self, parameter: Tensor | None = None, holder: object | None = None) -> Iterator[None]:
        """Read the field's cache key (`manifold_cache.field_key`) once for the calls of one optimiser step on one
        parameter (``egrad2rgrad``, ``component_inner``, ``retr``, ``transp``: four reads before, 0.1–0.25 ms each
        for a 60-tensor model) rather than at each lookup: inside, the lookups of this thread reuse the key read at
        the first one until the field's own code runs through the manifold (a factor evaluated on a miss, a landed
        entry stored), after which the next lookup reads it afresh, so a field that changes itself while computing
        is seen as before (with ``landing=True``, whose denoiser calls run between lookups, every lookup reads it).
        Only code that changes the field's tensors or settings between two manifold calls inside the block, which
        an optimiser's step does not, would go unseen: keep such code outside.

        The lookups inside also pin the entries they hit (`manifold_cache.FactorCache`: a parameter keeps its entry
        beyond the cache's capacity): to ``parameter``'s storage and view where given (the optimiser's tensor,
        `manifold_storage_refs.step_points`: a channels_last one's flat points are a temporary copy), else to the
        points' own, for as long as it and ``holder`` (the optimiser, where given: a finished run's ``p.detach()``
        keeps the storage, not the optimiser) live. A nested block on the same manifold leaves the outer one to
        read the key afresh at its next lookup (the inner block may have run the field's code)."""
        keys = _STEP.__dict__.setdefault("keys", {})
        owners = _STEP.__dict__.setdefault("owners", {})
        outer, outer_owner = keys.get(id(self), _OUTSIDE), owners.get(id(self))
        keys[id(self)] = _EVERY if getattr(self, "landing", False) else None  # (landing: its denoiser runs between
        owners[id(self)] = (parameter, holder)                                 # lookups, so read the key each time)
        try:
            yield
        finally:
            if outer is _OUTSIDE:
                keys.pop(id(self), None)
                owners.pop(id(self), None)
            else:
                keys[id(self)] = _EVERY if outer is _EVERY else None
                owners[id(self)] = outer_owner

    def _field_key(self) -> FieldKey:
        """The field's key (`field_key`): read now, or inside `one_step` the one read at its first lookup."""
        keys = getattr(_STEP, "keys", None)
        key = keys.get(id(self), _OUTSIDE) if keys else _OUTSIDE
        if key is _OUTSIDE or key is _EVERY:
            return field_key(self.field)
        if key is None:
            key = keys[id(self)] = field_key(self.field)
        return key

    def _in_step(self) -> bool:
        """Whether this thread is inside `one_step` on this manifold (an optimiser's parameter update)."""
        keys = getattr(_STEP, "keys", None)
        return bool(keys) and id(self) in keys

    def _pin_to(self, xf: Tensor) -> dict:
        """`FactorCache.find`'s pinning arguments for a lookup at ``xf`` ``(B, D)`` by this thread: none outside
        `one_step`, else ``pin`` and the ``points`` and ``holder`` of its parameter, where given."""
        if not self._in_step():
            return {}
        parameter, holder = getattr(_STEP, "owners", {}).get(id(self), (None, None))
        return {"pin": True, "points": None if parameter is None else step_points(xf, parameter), "holder": holder}

    def _field_ran(self) -> None:
        """The field's code ran (it may have changed the field): inside `one_step` the next lookup reads the key."""
        keys = getattr(_STEP, "keys", None)
        if keys and keys.get(id(self), _EVERY) is not _EVERY:
            keys[id(self)] = None

    def _cached(self, xf: Tensor) -> dict:
        """The cache entry for ``xf`` ``(B, D)`` (`manifold_cache`): geoopt's step computes the factor at the new
        point for ``transp``, then copies it into the parameter; the next step's ``egrad2rgrad`` finds it here.
        Grad-enabled and forward-mode queries compute afresh (`cache_bypassed`), in an entry of their own
        (``count`` ``None``). The entry found or made is returned: threads sharing the manifold change the cache at
        any time."""
        if cache_bypassed(xf):
            return {"A": self._field_factor(xf), "pairs": None, "checked": False, "count": None}
        cache = self._factors()
        key = self._field_key()  # read once: the lookup and, on a miss, the new entry share it
        entry = cache.find(self.field, xf, key, **self._pin_to(xf))  # (pinned: a parameter's update)
        if entry is None:
            entry = cache_entry(self.field, xf, self._field_factor(xf), key=key)
            cache.add(entry)
        return entry

    def _cache_entry(self, xf: Tensor, A: Tensor, pairs: Eigenpairs | None = None) -> dict | None:
        """A cache entry for the flat points ``xf`` ``(B, D)`` with factor ``A`` ``(B, D, r)`` (`cache_entry`), for
        landing to store; ``None`` (no entry: storing it changes nothing) under forward-mode AD, whose tensors must
        not outlive it."""
        self._field_ran()
        return None if forward_mode(xf) else cache_entry(self.field, xf, A, pairs)

    def clear_cache(self) -> None:
        """Drop the cached factors and what the cache keeps of the field (`manifold_cache.FieldTree`): needed only
        after changing field state the cache key does not read (`learned_manifold.manifold`'s docstring), e.g. a
        list or dict attribute of a custom field or a plain attribute of one of its submodules, and after another
        process edits the field's tensors in place through shared memory (version counters are per process:
        `manifold_cache`)."""
        self._factors().clear()
        release_tree(self.field)

    def field_settings(self) -> tuple:
        """The field's plain settings the cache key reads (`manifold_cache.field_settings`: ``sigma``, ``k``,
        ``centred``, ``precision``, ..., and the dtype and device of its weights)."""
        return field_settings(self.field)

    def __getstate__(self) -> dict:
        """The state without the cache (weak references: unpicklable); ``pickle``/``copy.deepcopy`` compute afresh."""
        return {**super().__getstate__(), "_factor_cache": None}  # type: ignore[misc]  # (nn.Module's)
