"""The report of `benchmarks.compare`: one markdown table and one figure per data set (split from compare.py)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .common import Table, fmt_bytes, fmt_num, fmt_time  # noqa: E402

__all__ = ["dataset_table", "path_cells", "plot_dataset"]


def path_cells(part: dict | None) -> tuple[str, str, str]:
    """Display cells: ``max / mean distance``, ``length (÷ true)``, ``endpoint gap`` (or the error)."""
    if part is None or "error" in part:
        return "failed", "failed", "failed"
    dist = f"{fmt_num(part['max_distance'])} / {fmt_num(part['mean_distance'])}"
    length = fmt_num(part["length"])
    if part.get("length_ratio") is not None:
        length += f" ({fmt_num(part['length_ratio'])})"
    if part.get("delta"):
        dist += f" [δ={part['delta']:g}]"
    return dist, length, fmt_num(part.get("endpoint_gap"))


def dataset_table(res: dict) -> Table:
    """The markdown table of one data set."""
    table = Table(
        f"{res['dataset']} (d = {res['intrinsic_dim']} in R^{res['dim']}, N = {res['n_train']:,}, "
        f"{res['pairs']} pairs)",
        ["method", "setting", "tangent error", "dim acc (median)", "mean λ₁", "flow max / mean dist",
         "flow length (÷ true)", "flow end gap", "geodesic max / mean dist", "geodesic length (÷ true)",
         "geodesic converged", "apply / query", "factor / query", "peak mem"],
    )
    for row in res["rows"].values():
        flow, geo = row.get("flow"), row.get("geodesic")
        f_dist, f_len, f_gap = path_cells(flow)
        g_dist, g_len, _ = path_cells(geo)
        converged = geo.get("converged") if geo else None
        acc = row.get("dimension_accuracy")
        table.add(row["label"], row["setting"], fmt_num(row.get("tangent_error")),
                  "n/a" if acc is None else f"{100 * acc:.0f}% ({row['median_dimension']})",
                  fmt_num(row.get("mean_top_eigenvalue")), f_dist, f_len, f_gap, g_dist, g_len,
                  "n/a" if converged is None else f"{100 * converged:.0f}%", fmt_time(row.get("apply_s")),
                  fmt_time(row.get("factor_s")), fmt_bytes(row.get("apply_peak_bytes")))
    return table


def plot_dataset(res: dict, manifold, path: Path) -> None:
    """Bar chart of tangent errors, bars of path distances, and the first pair's geodesics (3-D data) or their
    distance-to-manifold profiles (high-D data)."""
    rows = res["rows"]
    names = list(rows)
    fig = plt.figure(figsize=(17, 5))
    ax = fig.add_subplot(1, 3, 1)
    errs = [rows[n].get("tangent_error") for n in names]
    ax.bar(range(len(names)), [e if e is not None else 0.0 for e in errs], color="tab:blue")
    for i, e in enumerate(errs):
        if e is None:
            ax.text(i, 0.0, "n/a", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylabel("tangent-projector error (lower is better)")
    ax.set_title(f"{res['dataset']}: tangent error on test points")

    ax = fig.add_subplot(1, 3, 2)
    width = 0.4
    for shift, kind, colour in ((-width / 2, "flow", "tab:orange"), (width / 2, "geodesic", "tab:green")):
        vals = [rows[n].get(kind, {}).get("max_distance") for n in names]
        ax.bar([i + shift for i in range(len(names))], [v if v is not None else math.nan for v in vals], width,
               label=kind, color=colour)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylabel("max distance of path to manifold (mean over pairs)")
    ax.set_title("paths: how far they leave the manifold")
    ax.legend()

    if res["dim"] == 3:
        ax = fig.add_subplot(1, 3, 3, projection="3d")
        paths = {n: rows[n]["geodesic"]["first_path"].cpu() for n in names
                 if "first_path" in rows[n].get("geodesic", {})}
        every = torch.cat(list(paths.values()))
        lo, hi = every.amin(0) - 0.2, every.amax(0) + 0.2
        pts = res["data_sample"].cpu()
        near = pts[((pts >= lo) & (pts <= hi)).all(-1)]
        ax.scatter(near[:, 0], near[:, 1], near[:, 2], s=2, alpha=0.25, color="grey")
        for n, p in paths.items():
            ax.plot(p[:, 0], p[:, 1], p[:, 2], label=n, lw=1.5)
        for i, (axis_lo, axis_hi) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
            getattr(ax, f"set_{'xyz'[i]}lim")(axis_lo, axis_hi)
        ax.set_box_aspect(tuple((hi - lo).tolist()))
        ax.set_title("geodesics of the first pair (data in grey)")
    else:
        ax = fig.add_subplot(1, 3, 3)
        for n in names:
            geo = rows[n].get("geodesic", {})
            if "first_path" in geo:
                p = geo["first_path"]
                ax.plot(torch.linspace(0, 1, p.shape[0]), manifold.distance(p).cpu(), label=n, marker=".")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_xlabel("position along the path")
        ax.set_ylabel("distance to the manifold")
        ax.set_title("geodesics of the first pair: distance to S⁸")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
