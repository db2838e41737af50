"""``learned-manifold show MODEL DATA --out DIR``: pictures of a model's learned geometry of images (issue 9).

Writes to ``DIR``: ``eigenvectors.png`` (paper Fig. 3a), ``eigenvalues.png`` (Fig. 3b, per class when the data
have labels), ``interpolations_<i>.png`` (Fig. 5: LERP, gradient flow and geodesic between same-class pairs),
``dimension.png`` (pointwise intrinsic dimension) and ``show.json`` with the numbers behind them: per path the
mean distance to the nearest training image over points equally spaced along it (`interpolation_paths`), with
labels a locally trained classifier's mean confidence in the pair's class (`learned_manifold.classifier`), and
for the flow the fraction of the gap it closed (it stops short where the flow stalls).
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from learned_manifold import LearnedDataManifold, geodesic, interpolate, load_model
from learned_manifold.checks import as_index
from learned_manifold.classifier import SmallCNN, train_classifier
from learned_manifold.evaluation import field_eigenpairs, lerp, nearest_distance
from learned_manifold.geodesic_init import resample
from learned_manifold.geometry import intrinsic_dimension
from learned_manifold.image_figures import (
    plot_dimension_histogram,
    plot_eigenvalue_curves,
    plot_eigenvector_images,
    plot_interpolation_strips,
)
from learned_manifold.metrics import CoMetricField
from learned_manifold.metrics.base import check_count
from learned_manifold.model_file import atomic_write_bytes
from learned_manifold.models import MetricModel
from learned_manifold.user_warnings import warn_user

from .data import as_model_points
from .data.stream import CHUNK_ROWS, ArraySource
from .outputs import irregular_entry, named_entries, nearest_existing, probe_writable

__all__ = ["FLOW_OVERSAMPLING", "LISTED_PAIRS", "SHOW_FILES", "PathScore", "check_image_model", "check_show_folder",
           "interpolation_paths", "interpolation_scores", "is_strip", "run_show", "same_class_pairs", "show_files"]


@dataclass
class PathScore:
    """How close a path stays to the data: mean and max nearest-training-image distance over its points, and
    (with a classifier) the mean probability of the pair's shared class along the path."""

    mean_nearest: float
    max_nearest: float
    confidence: float | None


LISTED_PAIRS = 100_000
"""`same_class_pairs` lists every same-label pair only where there are at most this many (otherwise it draws)."""


def same_class_pairs(labels: Tensor | None, n_pairs: int, *, seed: int = 0, n: int | None = None) -> Tensor:
    """``(n_pairs, 2)`` indices ``(i, j)``, ``i ≠ j``, of points sharing a label (any two of ``n`` points without
    labels): distinct pairs (``(j, i)`` counts as ``(i, j)``), seeded.

    First ``100 · n_pairs`` random draws of two indices, kept where distinct, new and of one label (the draw of
    earlier versions, so the pairs of recorded benchmarks do not change); where that finds too few (rare classes:
    a single pair among 1000 labels, or many classes), the rest come from the label groups: all their pairs listed
    and picked by a seeded permutation where there are at most `LISTED_PAIRS`, else drawn (a class by its share of
    the pairs, two distinct members). With fewer pairs than asked it returns them all, with a warning saying how many.

    Args:
        labels: ``(N,)`` integer labels, or ``None`` (all points one class; then ``n`` is needed).
        n_pairs: pairs wanted, ``≥ 1``.
        seed: seed of the draw (a CPU ``torch.Generator``; the same pairs for the same arguments).
        n: the number of points without labels (``≥ 2``); with labels, ``N`` if given.

    Returns:
        ``(P, 2)`` int64 indices, ``P = n_pairs``, or all the pairs there are where fewer.

    Raises:
        TypeError: ``labels`` not a tensor or ``None``; ``n_pairs``, ``n`` or ``seed`` not an integer.
        ValueError: ``labels`` not 1-D integers, ``n_pairs < 1``, ``n`` missing, below 2 or unlike ``N``, or no two
            distinct points share a label.
    """
    n_pairs = check_count(n_pairs, "n_pairs")
    seed_index = as_index(seed)
    if seed_index is None:
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
    if labels is None:
        if n is None:
            raise ValueError("n (the number of points) is needed when labels is None")
        total = check_count(n, "n", low=2)
        groups = [torch.arange(total)]
    else:
        if not isinstance(labels, Tensor):
            raise TypeError(f"labels must be a tensor of integer labels or None, got {type(labels).__name__}")
        if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise ValueError(f"labels must be a 1-D tensor of integers, got shape {tuple(labels.shape)} and dtype "
                             f"{labels.dtype}")
        if n is not None and check_count(n, "n", low=0) != labels.shape[0]:
            raise ValueError(f"n = {n} differs from the {labels.shape[0]} labels")
        _, cls = torch.unique(labels.cpu(), return_inverse=True)
        order = torch.argsort(cls, stable=True)
        groups = [g for g in order.split(torch.bincount(cls).tolist()) if g.numel() >= 2]
    if not groups:
        raise ValueError(f"no two distinct points share a label among the {len(cls)} labels; cannot pick same-class "
                         f"pairs")
    gen = torch.Generator().manual_seed(seed_index)
    total = sum(int(g.numel()) for g in groups) if labels is None else int(labels.shape[0])
    seen: set[tuple[int, int]] = set()
    pairs: list[tuple[int, int]] = []
    for _ in range(100 * n_pairs):  # the draw of earlier versions: the recorded benchmarks' pairs stay the same
        i, j = torch.randint(0, total, (2,), generator=gen).tolist()
        key = (min(i, j), max(i, j))
        if i != j and key not in seen and (labels is None or int(labels[i]) == int(labels[j])):
            seen.add(key)
            pairs.append((i, j))
            if len(pairs) == n_pairs:
                return torch.tensor(pairs, dtype=torch.int64)
    # the draw missed (rare or many classes): the rest from the label groups, listed where they hold few pairs
    sizes = torch.tensor([g.numel() for g in groups], dtype=torch.float64)
    if float((sizes * (sizes - 1) / 2).sum()) <= LISTED_PAIRS:
        rest = [pair for g in groups for pair in torch.combinations(g, 2).tolist() if tuple(pair) not in seen]
        for r in torch.randperm(len(rest), generator=gen)[:n_pairs - len(pairs)].tolist():
            pairs.append(tuple(rest[r]))
    else:  # a class by its share of the pairs, then two distinct members; more than 10⁵ pairs: repeats are rare
        weights = sizes * (sizes - 1)
        while len(pairs) < n_pairs:
            g = groups[int(torch.multinomial(weights, 1, generator=gen))]
            a, b = torch.randperm(g.numel(), generator=gen)[:2].tolist()
            i, j = int(g[a]), int(g[b])
            if (min(i, j), max(i, j)) not in seen:
                seen.add((min(i, j), max(i, j)))
                pairs.append((i, j))
    if len(pairs) < n_pairs:
        warn_user(f"same_class_pairs: only {len(pairs)} distinct pairs of points share a label, fewer than "
                  f"the {n_pairs} asked; returning all {len(pairs)}")
    return torch.tensor(pairs, dtype=torch.int64)


def _nearest_in_file(inner: Tensor, source: ArraySource) -> Tensor:
    """`nearest_distance` of the ``(n, D)`` points ``inner`` to every row of a mapped file, one chunk of rows at
    a time (the least over the chunks): ``(n,)``."""
    best = None
    for chunk in source.chunks(torch.arange(len(source))):
        dist = nearest_distance(inner, chunk.reshape(chunk.shape[0], -1))
        best = dist if best is None else torch.minimum(best, dist)
    return best


def interpolation_scores(paths: dict[str, Tensor], data: Tensor | ArraySource, *,
                         classifier: SmallCNN | None = None, label: int | None = None) -> dict[str, PathScore]:
    """Score each path ``(T, *shape)``, ``T ≥ 3``, against the training ``data`` ``(N, *shape)`` (interior points
    only: the ends are the pair's own images). ``data`` may be a memory-mapped file (`open_npy`): its rows are
    then read chunk by chunk, once for all the paths, instead of held in memory."""
    mapped = isinstance(data, ArraySource)
    shape = tuple(data.shape[1:])
    width = math.prod(shape)
    flat = None if mapped else data.reshape(data.shape[0], -1)
    inner = {}
    for name, path in paths.items():
        if path.shape[0] < 3 or path[0].numel() != width:
            raise ValueError(f"path {name!r} must have shape (T >= 3, *{shape}) to have interior "
                             f"points to score, got {tuple(path.shape)}")
        points = path[1:-1].reshape(path.shape[0] - 2, -1)
        inner[name] = points.float() if mapped else points.to(flat)
    if mapped:
        every = _nearest_in_file(torch.cat(list(inner.values())), data).split([p.shape[0] for p in inner.values()])
        dists = dict(zip(inner, every, strict=True))
    else:
        dists = {name: nearest_distance(points, flat) for name, points in inner.items()}
    out = {}
    for name, points in inner.items():
        conf = None
        if classifier is not None and label is not None:
            with torch.no_grad():
                conf = float(classifier.proba(points.reshape(-1, *paths[name].shape[1:]))[:, label].mean())
        out[name] = PathScore(float(dists[name].mean()), float(dists[name].max()), conf)
    return out


FLOW_OVERSAMPLING = 8
"""The flow is solved at this many times more points than it is drawn with, then resampled by arc length."""


def interpolation_paths(manifold: LearnedDataManifold | CoMetricField, x0: Tensor, x1: Tensor,
                        n_points: int) -> tuple[dict[str, Tensor], Tensor]:
    """LERP, gradient flow and geodesic between ``x0`` and ``x1`` ``(B, *shape)``: ``({name: (B, T, *shape)},
    gap_closed (B,))``, ``T = n_points``, with the flow's fraction of the gap closed (`interpolate`). Any
    co-metric field serves as well as a manifold (e.g. `KNNCDC`, for a baseline: `benchmarks/image_paths.py`).

    LERP and the flow are sampled at points equally spaced in Euclidean arc length. A flow's own points, equally
    spaced in time, bunch up where it slows near its end: on digits 40% of the arc lay before the first of 16
    steps and the last eight points within 2% of the end, so a per-point score (the distance to the nearest
    training image) was mostly a score of the end point (3.1 in time against 7.9 by arc length, where LERP
    scores 7.9). The flow is solved at `FLOW_OVERSAMPLING` times the points and resampled. The geodesic keeps
    the solver's points, which an energy minimum spaces evenly in the metric.
    """
    b, shape = x0.shape[0], x0.shape[1:]
    flat0, flat1 = x0.reshape(b, -1), x1.reshape(b, -1)
    with warnings.catch_warnings():  # the pictures use the paths, not their reported lengths, which the gap rule's
        # dimension would shorten on images whose weaker directions are real (digits: up to 0.6 λ₁ dropped)
        warnings.filterwarnings("ignore", message=r".*keep the gap rule's directions")
        flow = interpolate(manifold, x0, x1, n_points=FLOW_OVERSAMPLING * (n_points - 1) + 1)
        geo = geodesic(manifold, flat0, flat1, n_points=n_points)
    paths = {
        "LERP": lerp(flat0, flat1, n_points),
        "gradient flow": resample(flow.path.reshape(b, -1, flat0.shape[1]), n_points),
        "geodesic": geo.path,
    }
    return {name: p.reshape(b, n_points, *shape) for name, p in paths.items()}, flow.gap_closed.reshape(b)


def check_image_model(data_shape: tuple[int, ...], model_name: str = "model") -> None:
    """Refuse a model whose points are not images, ``(H, W)`` or ``(C, H, W)``, before any work: `show` would
    draw a circle's points ``(2,)`` as 1×2-pixel pictures."""
    if len(data_shape) not in (2, 3):
        raise ValueError(f"{model_name} has points of shape {tuple(data_shape)}, not images: show draws the geometry "
                         "of images and needs a model trained on points of shape (H, W) or (C, H, W)")


SHOW_FILES = ("eigenvectors.png", "eigenvalues.png", "dimension.png", "show.json")
"""The files `run_show` writes into its folder, besides the strips ``interpolations_<i>.png`` (`is_strip`)."""


def is_strip(name: str) -> bool:
    """Whether ``name`` is an interpolation strip's, ``interpolations_<i>.png`` (``i`` digits)."""
    return name.startswith("interpolations_") and name.endswith(".png") and name[15:-4].isdigit()


def show_files(folder: Path) -> list[Path]:
    """The entries of ``folder`` (if it exists) named as `run_show` names its files (`SHOW_FILES`, `is_strip`),
    sorted."""
    return named_entries(folder, SHOW_FILES, is_strip)


def check_show_folder(out: str | os.PathLike, data_source: str | os.PathLike | None = None, *,
                      overwrite: bool = False) -> Path:
    """Refuse, before any work and creating nothing, a folder ``out`` that `run_show` must not or cannot write.

    Refused: an empty name; a file (or a path under one); the data's own folder or file (``data_source``); a
    folder holding an earlier run's files (`show_files`) unless ``overwrite``; one of those names that is not a
    regular file (a folder, a link), even with ``overwrite``; a folder (or, where ``out`` is missing, the nearest
    parent that exists) in which no file can be created (a probe file, as `outputs.check_output` does).

    Raises:
        ValueError: one line naming ``out (--out)`` and the problem.
    """
    if not os.fspath(out).strip():
        raise ValueError("out (--out) is empty: give a folder for the pictures")
    out = Path(out)
    folder, what = nearest_existing(out)  # the folder, or the nearest of its parents that exists
    if what is not None:
        raise ValueError(f"out (--out) '{out}' {what}, not a folder: give a folder for the pictures")
    if data_source is not None and Path(data_source).exists():
        source = Path(data_source).resolve()
        target = out.resolve()
        if target == source or (source.is_dir() and source in target.parents):
            raise ValueError(f"out (--out) '{out}' is inside the data '{data_source}': the pictures would be added to "
                             "your images; choose another folder")
    earlier = show_files(out)
    odd = irregular_entry(earlier)
    if odd is not None:
        raise ValueError(f"out (--out): '{odd[0]}' is {odd[1]}; show writes a file of that name: remove it or choose "
                         "another folder")
    if earlier and not overwrite:
        names = ", ".join(p.name for p in earlier[:4]) + (", ..." if len(earlier) > 4 else "")
        raise ValueError(f"out (--out) '{out}' holds an earlier show's files ({names}); replace them with "
                         "--overwrite (overwrite=True) or choose another folder")
    try:
        probe_writable(folder, ".show.")
    except OSError as err:
        raise ValueError(f"out (--out) '{out}': the folder '{folder}' is not writable "
                         f"({err.strerror or err})") from None
    return out


def _png(fig) -> bytes:
    """``fig`` as PNG bytes (as `image_figures` saves it; the figure is then closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _write_all(out: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (name -> bytes) into ``out``, each atomically, ``show.json`` last, then remove the strips of
    an earlier run that this one did not write. A failed write is one line naming the file (and what was written
    before it); every file not yet written keeps its earlier content."""
    done: list[str] = []
    for name, data in files.items():
        try:
            atomic_write_bytes(out / name, data)
        except OSError as err:
            kept = f"{', '.join(done)} were written" if done else "nothing was written"
            raise ValueError(f"could not write '{out / name}': {err.strerror or err} (out (--out) '{out}'); {kept}, "
                             "the other files are as they were") from None
        done.append(name)
    for old in show_files(out):  # an earlier run's strips that show.json no longer describes
        if is_strip(old.name) and old.name not in files:
            old.unlink(missing_ok=True)


def _file_range(source: ArraySource) -> tuple[float, float]:
    """The least and the largest value in a mapped file, read chunk by chunk (one error naming the file and the
    first row with a NaN or inf)."""
    lo, hi = math.inf, -math.inf
    for start, chunk in zip(range(0, len(source), CHUNK_ROWS), source.chunks(torch.arange(len(source))), strict=True):
        finite = torch.isfinite(chunk.reshape(chunk.shape[0], -1)).all(-1)
        if not bool(finite.all()):
            raise ValueError(f"{source.label}: contains non-finite values (NaN or inf); the first bad row is index "
                             f"{start + int((~finite).nonzero()[0, 0])}")
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    return lo, hi


def _rows(data: Tensor | ArraySource, idx: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Rows ``idx`` ``(n,)`` of ``data`` as ``(n, *shape)`` (a mapped file reads only those rows, as float32)."""
    return as_model_points(data.rows(idx), shape, "data") if isinstance(data, ArraySource) else data[idx]


def run_show(model: MetricModel | str | os.PathLike, data: Tensor | ArraySource, out: str | os.PathLike, *,
             labels: Tensor | None = None, n_points: int = 256, n_pairs: int = 3, path_points: int = 17,
             classifier_steps: int = 400, seed: int = 0, data_source: str | os.PathLike | None = None,
             class_names: Sequence[str] | None = None, overwrite: bool = False) -> dict:
    """Draw the pictures of a model's geometry on ``data`` ``(N, *data_shape)`` into the folder ``out``.

    Returns the report written to ``out/show.json``. ``labels`` ``(N,)`` (optional) give per-class curves,
    same-class pairs and the classifier that scores the interpolations. ``data`` may drop or add a channel axis
    of one (`as_model_points`); other shapes are refused. ``data_source`` (the folder or file the data came
    from) is never written into: ``out`` inside a data folder would add the figures to the user's images.
    ``class_names`` name the label values (an image folder's class folders, `ImageData.class_names`): legends,
    titles and ``show.json`` (``"class"`` beside each pair's ``"label"``) use them instead of the indices. A model
    whose points are not images is refused (`check_image_model`). ``out`` is checked before any work
    (`check_show_folder`): a folder holding an earlier run's files is refused unless ``overwrite``. Every file is
    written at the end, each atomically (`_write_all`, ``show.json`` last), and only then are an earlier run's
    strips that this run did not draw removed: a run stopped before the end leaves the folder as it was.

    ``data`` may also be a memory-mapped ``.npy`` (`open_npy`): then only the rows drawn are read, and the value
    range and the nearest-image distances are taken over all rows chunk by chunk, so memory stays near the mapped
    pages instead of a float32 copy of the file (the report is the same).

    Raises:
        TypeError: ``n_points``, ``n_pairs``, ``path_points`` or ``classifier_steps`` not an integer.
        ValueError: ``n_points``, ``n_pairs`` or ``classifier_steps`` below 1, ``path_points`` below 2 (before
            anything is read or written); a model or data of the wrong kind, ``labels`` of the wrong shape.
    """
    n_points, n_pairs = check_count(n_points, "n_points"), check_count(n_pairs, "n_pairs")
    path_points = check_count(path_points, "path_points (both ends counted)", low=2)
    classifier_steps = check_count(classifier_steps, "classifier_steps")
    model = load_model(model) if not isinstance(model, MetricModel) else model
    shape = tuple(model.data_shape)
    check_image_model(shape)
    if labels is not None and class_names is not None and int(labels.max()) >= len(class_names):
        raise ValueError(f"class_names has {len(class_names)} names, but the labels go up to {int(labels.max())}")
    if isinstance(data, ArraySource):
        as_model_points(torch.empty(0, *data.shape[1:]), shape, "data")  # the shape, before any row is read
    else:
        data = as_model_points(data, shape, "data").float()
    n = len(data)
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    out = check_show_folder(out, data_source, overwrite=overwrite)
    value_range = _file_range(data) if isinstance(data, ArraySource) else (float(data.min()), float(data.max()))
    manifold = LearnedDataManifold(model)
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(n, generator=gen)[: min(n_points, n)]
    x = _rows(data, pick, shape).reshape(pick.numel(), -1)
    with torch.no_grad():
        pairs_eig = field_eigenpairs(manifold.field, x)
    dims = intrinsic_dimension(pairs_eig.values)
    report: dict = {"points": int(pick.numel()), "data_points": n,  # the images paths are scored on
                    "median_dimension": int(dims.median()),  # the lower median (SPEC §5), as the histogram marks
                    "dimension_counts": {int(d): int((dims == d).sum()) for d in torch.unique(dims)}}
    files = {  # name -> PNG bytes: written all together at the end (`_write_all`)
        "eigenvectors.png": _png(plot_eigenvector_images(x[:4], pairs_eig.values[:4], pairs_eig.vectors[:4], shape,
                                                         value_range=value_range)),
        "eigenvalues.png": _png(plot_eigenvalue_curves(
            pairs_eig.values, None if labels is None else labels[pick], class_names=class_names,
            max_index=min(model.rank, 32),
            title="Cumulative eigenvalues of G " + ("per class" if labels is not None else "(no labels: all points)"))),
        "dimension.png": _png(plot_dimension_histogram(dims)),
    }
    classifier = None
    if labels is not None:
        every = _rows(data, torch.arange(n), shape) if isinstance(data, ArraySource) else data  # (all rows: it trains)
        classifier = train_classifier(every, labels, steps=classifier_steps, seed=seed)
    idx = same_class_pairs(labels, n_pairs, seed=seed, n=n)
    paths, gap_closed = interpolation_paths(manifold, _rows(data, idx[:, 0], shape), _rows(data, idx[:, 1], shape),
                                            path_points)
    report["interpolations"] = []
    for p in range(idx.shape[0]):
        label = None if labels is None else int(labels[idx[p, 0]])
        class_name = None if label is None else str(label if class_names is None else class_names[label])
        one = {name: path[p] for name, path in paths.items()}
        scores = interpolation_scores(one, data, classifier=classifier, label=label)
        text = {name: f"near {s.mean_nearest:.3g}" + ("" if s.confidence is None else f", p={s.confidence:.2f}")
                for name, s in scores.items()}
        if "gradient flow" in text:  # a flow need not reach its end image (SPEC §6): say how far it got
            text["gradient flow"] += f"\ngap closed {float(gap_closed[p]):.0%}"
        files[f"interpolations_{p}.png"] = _png(plot_interpolation_strips(
            one, shape, scores=text, value_range=value_range,
            title=f"Pair {p}" + ("" if class_name is None else f" (class {class_name})")
                  + ": near = mean distance to the nearest training image"
                  + ("" if classifier is None else ", p = classifier confidence")))
        entry = {"pair": idx[p].tolist(), "label": label, **({} if class_names is None else {"class": class_name}),
                 **{method: asdict(s) for method, s in scores.items()}}
        entry["gradient flow"]["gap_closed"] = float(gap_closed[p])
        report["interpolations"].append(entry)
    files["show.json"] = (json.dumps(report, indent=2) + "\n").encode()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"could not create the folder out (--out) '{out}': {err.strerror or err}") from None
    _write_all(out, files)
    return report
