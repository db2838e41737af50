"""The learned carré du champ: a trained `MetricModel` as a co-metric field (SPEC §5)."""

from __future__ import annotations

import os

import torch
from torch import Tensor

from ..checks import Real
from ..geometry import lowrank_apply, lowrank_solve
from ..model_file import _load_model
from ..model_file_notes import SIGMA_RTOL
from ..models import MetricModel
from ..precision import check_precision, choose_precision, full_precision, workload_key
from ..user_warnings import warn_user
from .base import CoMetricField, check_finite_output, check_points, check_scalar, check_vectors
from .knn import KNNCDC

__all__ = ["LearnedCDC"]

MIN_GRAPH_POINTS = 2
"""Fewest points (landmarks or ``data``) a neighbour graph joins: each needs another point as its neighbour."""


class LearnedCDC(CoMetricField):
    """Co-metric ``G(x) = A(x) Aᵀ(x) + λ_T I`` from a trained network, plus the isotropic part ``δ``.

    ``apply`` is ``(AAᵀ + (λ_T + δ) I) w`` in ``O(D r)``; ``metric`` is its inverse by Woodbury in
    ``O(D r² + r³)`` (for ``λ_T + δ = 0``, the pseudo-inverse on the range of ``A``). The field's isotropic part
    `delta` is ``λ_T + δ``; like every field's, ``factor`` and ``dense`` leave it out (``dense`` is ``AAᵀ``), so
    eigenvalues from them (`evaluation.field_eigenpairs`) are ``G``'s less ``λ_T`` (the eigenvectors are ``G``'s).
    The network is a registered submodule, so the field follows ``.to(device/dtype)``. It is frozen **in place**:
    the constructor calls ``model.requires_grad_(False).eval()`` on the very module given (not a copy), so a
    model still being trained stops receiving gradients (autograd's "does not require grad", or its parameters
    silently skipped). To keep training it, pass ``copy.deepcopy(model)`` (and wrap the new weights again later).
    The network stays in eval mode whatever ``.train()`` is called on (the field, a `LearnedDataManifold` or a user
    module holding it, `train`): its geometry has no dropout or batch statistics.

    Args:
        model: a `MetricModel` or the path of a model file; a `MetricModel` given is frozen in place (above). A
            path is read as `load_model` reads it, with its ``ModelFileWarning`` for a mid-run checkpoint, for a
            model the checks at the end of its training did not trust (its stored verdict), and for a default σ
            chosen by a replaced rule only where ``sigma`` is ``None``.
        sigma: evaluation bandwidth in data units (``None``: the model's default). A ``UserWarning`` names it
            and the model's training range ``[sigma_min, sigma_max]`` (`ModelConfig`) when it lies outside
            (by more than `model_file_notes.SIGMA_RTOL`): the network never saw that bandwidth, and its tangent
            spaces and dimensions there are extrapolation.
        delta: isotropic part ``δ ≥ 0`` added on top of the model's Tikhonov term.
        precision: ``"fp32"``, ``"bf16"`` to run the network under bf16 autocast (the factor is returned in
            the dtype of the query; the Gram/Woodbury algebra stays in that dtype), or ``"auto"``: bf16 only where
            a forward of this network (a batch of `PROBE_BATCH` points) measured at least 10% faster in bf16 on
            the device, in repeated passes (`learned_manifold.precision.probe_precision`, cached per process).
            The choice and its measured times are ``precision_choice``; a field moved to another device, or
            whose ``precision`` attribute is set anew, decides again on its first query.
        data: ``(N, D)`` or ``(N, *data_shape)`` points of the data (``None``: the model's stored landmarks,
            `ModelConfig.landmarks`, if it has any). They are ``data_graph``, a `KNNCDC` whose k-NN graph the
            geodesic solver's default start walks through (`learned_manifold.geodesic_init`), and the points the
            off-data checks search (`beyond_data`, landing's refusal and warning, the flows' and optimisers'
            warnings): for ``N`` above `KNNCDC.GRAPH_POINTS` a seeded subsample of that many (`off_data_graph`),
            whose coarser spacing makes the off-data distance larger than the full data's would be. The field's
            values do not depend on them. The graph searches the landmarks themselves (or ``data``, not copied), so
            it follows ``load_state_dict`` (``assign=True`` too), `MetricModel.set_landmarks`, a new
            ``model.landmarks`` tensor and ``.to(...)`` (`KNNCDC._fresh`, `data_graph`). A model
            storing fewer than `MIN_GRAPH_POINTS` landmarks has no graph, as one storing none. Training refuses
            one landmark (``--landmarks 1``, ``TrainConfig(landmarks=1)``), so such a model comes only from an
            older file or a hand-built ``ModelConfig(landmarks=1)``: ``data_graph`` is ``None``, `beyond_data`
            returns ``None``, ``geodesic(init="auto")`` starts by landing (or linearly), and only ``init="graph"``
            refuses, naming the missing data.

    Example:
        >>> import torch
        >>> from learned_manifold import MetricModel, ModelConfig
        >>> from learned_manifold.metrics import LearnedCDC
        >>> config = ModelConfig(data_shape=(3,), rank=2, arch_kwargs={"hidden": 16, "depth": 1, "emb_dim": 8})
        >>> model = MetricModel(config)  # untrained here; trained ones come from `learned-manifold train`
        >>> field = LearnedCDC(model, sigma=0.1, delta=1e-2)  # or LearnedCDC("model.lmm"): the model's default sigma
        >>> x, w = torch.randn(5, 3), torch.randn(5, 3)
        >>> A = field.factor(x)  # (B, D, r)
        >>> A.shape, torch.allclose(field.apply(x, w), (A @ A.transpose(1, 2) @ w.unsqueeze(-1)).squeeze(-1) + 1e-2 * w)
        (torch.Size([5, 3, 2]), True)
        >>> torch.allclose(field.metric(x, field.apply(x, w)), w, atol=1e-4)  # metric inverts apply (Woodbury)
        True
    """

    PROBE_BATCH = {"cuda": 8192, "cpu": 256}
    """Points per forward in the ``"auto"`` probe, per device type (others: the CPU's)."""

    low_rank = True
    dim: int  # the model's ``D`` (never ``None``)

    def __init__(self, model: MetricModel | str | os.PathLike,
                 sigma: Real | None = None, *,
                 delta: Real = 0.0, precision: str = "fp32",
                 data: Tensor | None = None):
        super().__init__()
        self.precision = check_precision(precision)
        self._choices: dict[str, dict] = {}
        if not isinstance(model, MetricModel):  # the file's cautions (`load_model`): its default σ's if used
            model = _load_model(model, "cpu", default_sigma=sigma is None)
        delta = check_scalar(delta, "delta", allow_zero=True)
        if sigma is not None:
            sigma = check_scalar(sigma, "sigma")
        self.model = model.requires_grad_(False).eval()
        if sigma is not None:
            _check_trained_range(sigma, model.config.sigma_min, model.config.sigma_max)
        self.sigma = float(model.config.default_sigma if sigma is None else sigma)
        self.extra_delta = float(delta)
        self.dim = model.dim
        self.centred = model.config.centred
        # One landmark (an older file, or a hand-built ModelConfig) joins no neighbour graph: none, as without any
        self._landmark_graph = data is None and model.config.landmarks >= MIN_GRAPH_POINTS
        if self._landmark_graph:
            data = model.landmarks
        graph = None if data is None else _graph(data, self.dim, landmarks=self._landmark_graph)
        self._modules["data_graph"] = graph  # a submodule (or None) read through the `data_graph` property
        if precision == "auto":
            self._choice(self.model.scale.device)  # measure now, on the model's device, not inside a first query

    def train(self, mode: bool = True) -> LearnedCDC:
        """`torch.nn.Module.train` for the field's other submodules; the frozen network stays in eval mode (a
        ``.train()`` on a module holding the manifold, as at the start of an epoch, used to turn dropout on in the
        geometry: two equal ``proju`` calls differed by 0.6)."""
        super().train(mode)
        self.model.eval()
        return self

    def _apply(self, fn, *args, **kwargs):  # noqa: ANN001, ANN202 (torch.nn.Module's private signature)
        """``.to(...)`` and the like; the landmark graph is pointed again at the moved landmarks (the move gave it
        a copy of its own, which `load_state_dict` and `MetricModel.set_landmarks` would no longer update)."""
        out = super()._apply(fn, *args, **kwargs)
        self._follow_landmarks()
        return out

    @property
    def data_graph(self) -> KNNCDC | None:
        """The `KNNCDC` over the landmarks or ``data`` (class docstring), ``None`` without any; a landmark graph
        is first pointed again at the model's ``landmarks`` buffer where that buffer was replaced by a new tensor
        (``load_state_dict(..., assign=True)``, ``model.landmarks = new``: it had kept searching the old ones)."""
        self._follow_landmarks()
        return self._modules.get("data_graph")

    def _follow_landmarks(self) -> None:
        """Point the landmark graph at the model's ``landmarks`` buffer where it views another tensor (the buffer
        replaced, or moved by `_apply`); the graph's index is rebuilt on its next query (`KNNCDC._fresh`)."""
        graph, landmarks = self._modules.get("data_graph"), getattr(self.model, "landmarks", None)
        if not self.__dict__.get("_landmark_graph") or graph is None or landmarks is None:
            return
        data = graph.data
        if (data.data_ptr() != landmarks.data_ptr() or data.dtype != landmarks.dtype or data.device != landmarks.device
                or data.numel() != landmarks.numel()):
            graph.data = landmarks.detach().reshape(-1, self.dim)

    def _check_device(self, x: Tensor) -> None:
        """One clear error where ``x`` is not on the model's device (not the network's deep inside it)."""
        if x.device != self.model.scale.device:
            raise ValueError(f"x is on {x.device} but the model is on {self.model.scale.device}; move the field "
                             "(or its manifold) with .to(...), or the points")

    @property
    def rank(self) -> int:
        """``r``, the width of the factor (the model's ``rank``)."""
        return int(self.model.config.rank)

    @property
    def delta(self) -> float:  # type: ignore[override]
        """Total isotropic part: the model's Tikhonov term ``λ_T`` plus the user's ``δ``."""
        return self.model.config.tikhonov + self.extra_delta

    @full_precision
    def factor(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        """``(B, D)`` → ``(B, D, r)``, in the dtype of ``x``.

        ``sigma``: ``None`` for the field's bandwidth, a float, or one bandwidth per point ``(B,)`` (landing).

        Raises:
            ValueError: ``x`` is not on the model's device; the network gives NaN/inf at finite points (e.g.
                ``|x| ~ 1e30`` overflows its layers): never returned silently. Rows of ``x`` that are already NaN
                give NaN rows.
        """
        check_points(x, self.dim)
        self._check_device(x)
        xs = x.to(self.model.scale.dtype)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self._bf16(x.device)):
            A = self.model.factor(xs, self._sigma(sigma, xs))
        check_finite_output(xs, A, "factor network")
        return A.to(x.dtype)

    @property
    def precision_choice(self) -> dict:
        """Why the network runs in the precision it does on the model's device under the current ``precision``:
        the record of `learned_manifold.precision.choose_precision` (``setting``, ``choice``, ``reason``, and for
        ``"auto"`` the measured ``fp32_ms``/``bf16_ms`` of a forward)."""
        return dict(self._choice(self.model.scale.device))

    def _choice(self, device: torch.device) -> dict:
        """The `choose_precision` record for the current ``precision`` on ``device``, kept per (setting, device):
        a field whose ``precision`` is set anew decides again (it had kept the record of its first setting, and
        never probed after ``precision = "auto"``). An unknown setting raises ``ValueError`` naming
        ``precision``, before the network runs."""
        key = (self.precision, str(device))
        if key not in self._choices:
            batch = self.PROBE_BATCH.get(device.type, self.PROBE_BATCH["cpu"])
            self._choices[key] = choose_precision(
                self.precision, device, lambda: self.model.factor(self._probe_points(device, batch), self.sigma),
                key=workload_key("factor", self.model.config, batch))[1]
        return self._choices[key]

    def _bf16(self, device: torch.device) -> bool:
        return self._choice(device)["choice"] == "bf16"

    def _probe_points(self, device: torch.device, batch: int) -> Tensor:
        """``(batch, *data_shape)`` points at the data's scale around its mean (seeded; global RNG untouched)."""
        g = torch.Generator(device=device).manual_seed(0)
        shape = tuple(self.model.mean.shape)
        z = torch.randn(batch, *shape, generator=g, device=device, dtype=self.model.scale.dtype)
        return self.model.mean.to(device) + self.model.scale.to(device) * z / self.dim ** 0.5

    def _sigma(self, sigma: float | Tensor | None, x: Tensor) -> float | Tensor:
        return self.sigma if sigma is None else (sigma.to(x.dtype) if isinstance(sigma, Tensor) else sigma)

    @full_precision
    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        check_vectors(x, w, self.dim, "w")
        return lowrank_apply(self.factor(x), w, self.delta)

    @full_precision
    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        check_vectors(x, v, self.dim, "v")
        return lowrank_solve(self.factor(x), v, self.delta)

    @full_precision
    def project(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        """Landing: the denoiser's posterior mean ``x̂(x, σ)`` (SPEC §6); ``sigma`` as in `factor`."""
        if not self.model.has_denoiser:
            raise RuntimeError("this model has no denoiser: landing projection is unavailable")
        check_points(x, self.dim)
        self._check_device(x)
        xs = x.to(self.model.scale.dtype)
        out = self.model.denoise(xs, self._sigma(sigma, xs))
        check_finite_output(xs, out, "denoiser network")
        return out.to(x.dtype)

    def beyond_data(self, x: Tensor) -> Tensor | None:
        """`CoMetricField.beyond_data` against the landmarks (or the ``data`` given, `off_data_graph`); ``None``
        without them."""
        graph = self.off_data_graph()
        return None if graph is None else graph.beyond_data(x)

    def off_data_graph(self) -> KNNCDC | None:
        """The data points the off-data checks search (`beyond_data`, `landing.off_data_threshold`), ``None``
        without any: the landmarks, or of ``data`` the seeded subsample of at most `KNNCDC.GRAPH_POINTS` rows that
        the geodesic start graph joins (`KNNCDC.graph_rows`, as a trained model keeps its landmarks), so that a
        landing costs the same whatever ``N``. Searching all ``N`` rows cost 0.137 s per ``projx`` of 16 points at
        ``N = 1e6`` (0.006 s on the landmarks) and 27.9 s on the first call (`KNNCDC.far_distance`). Built once,
        again when ``data`` changes (`KNNCDC._data_key`)."""
        graph = self.data_graph
        if graph is None or self.__dict__.get("_landmark_graph"):
            return graph
        key, cached = graph._data_key(), self.__dict__.get("_off_data_cache")
        if cached is None or cached[0] != key:
            rows = graph.graph_rows()
            sub = graph if rows.numel() == graph.data.shape[0] else _graph(graph.data[rows], self.dim)
            self.__dict__["_off_data_cache"] = cached = (key, sub)
        return cached[1]

    def length_scale(self) -> float:
        """The model's data scale ``s`` (SPEC §1)."""
        return float(self.model.scale)

    def landing_bandwidths(self) -> tuple[float, float]:
        """``(σ, σ_max)``: the field's bandwidth and the top of the model's training range."""
        return self.sigma, max(self.sigma, float(self.model.config.sigma_max))

    @property
    def can_project(self) -> bool:
        return self.model.has_denoiser

    def extra_repr(self) -> str:
        return f"sigma={self.sigma:.4g}, delta={self.delta:.4g}, precision={self.precision}"


def _check_trained_range(sigma: float, sigma_min: float, sigma_max: float) -> None:
    """Warn (``UserWarning``, naming both) when ``sigma`` lies outside ``[sigma_min, sigma_max]`` beyond
    `learned_manifold.model_file_notes.SIGMA_RTOL` (the slack the trainer chooses the default σ inside the range
    with)."""
    if sigma_min * (1 - SIGMA_RTOL) <= sigma <= sigma_max * (1 + SIGMA_RTOL):
        return
    side = "below" if sigma < sigma_min else "above"
    warn_user(f"sigma={sigma:.4g} lies {side} the model's training range [{sigma_min:.4g}, {sigma_max:.4g}] "
              "(data units): the network never saw this bandwidth, so its tangent spaces and dimensions here "
              "are extrapolation; choose a sigma inside the range (or None for the model's default)", UserWarning)


def _graph(data: Tensor, dim: int, *, landmarks: bool = False) -> KNNCDC:
    """``data`` ``(N, D)`` or ``(N, *shape)`` as the `KNNCDC` whose neighbour graph geodesics start on; with
    ``landmarks`` (a model's own), a scale the k-NN search cannot hold (`knn_scale.check_data_scale`: a model
    trained before the trainer refused such units) is named as the model's, not as the caller's ``data``."""
    if not isinstance(data, Tensor):
        raise TypeError(f"data must be a torch.Tensor, got {type(data).__name__}")
    if data.ndim < 2 or data.shape[0] < MIN_GRAPH_POINTS or data[0].numel() != dim:
        raise ValueError(f"data must hold at least {MIN_GRAPH_POINTS} points of dimension {dim}, got shape "
                         f"{tuple(data.shape)}")
    try:
        return KNNCDC(data.detach().reshape(data.shape[0], dim), k=min(10, data.shape[0]), sigma=1.0,  # σ: unused
                      persistent=False)  # the model's landmarks (or the caller's data): not copied into state_dict
    except ValueError as err:
        if not landmarks:
            raise
        raise ValueError(f"the model's landmarks (its training data's units) cannot be searched: {err}; the trainer "
                         "now refuses such units: retrain on data multiplied by a power of ten") from None
