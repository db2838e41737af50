"""Can the factor network fit a sphere's tangent projector, and from which loss? (issue 12, S¹⁶)

A supervised probe of the default recipe's factor objective with the denoiser taken out: the exact target
``J = P_T(x)`` (the tangent projector of S^d in R^D, which ``Γᶜ`` tends to as σ → 0, SPEC §2) is known, and the
factor network (`learned_manifold.mlp.FiLMResMLP`, the CLI's default size and the norm feature) is trained on it
for a fixed number of steps by one of three losses:

* ``exact``: the Frobenius distance ``‖AAᵀ − P_T‖²_F = ‖AᵀA‖²_F − 2‖TᵀA‖²_F + d`` (``T`` the true basis);
* ``probe``: the default recipe's estimator, `training.losses.jacobian_matching` with one ``v ~ N(0, I)`` per
  point, ``‖AAᵀv − P_T v‖²`` (unbiased for the same distance);
* ``probe-K``: the mean of ``K`` such probes per point.

Reported: the tangent-projector error of the top-``d`` eigenvectors of ``AAᵀ`` on held-out points, the mass
``x̂ᵀAAᵀx̂`` that ``AAᵀ`` keeps along the radial normal, and the ``(d+1)``-th eigenvalue (0 for a fit, about 1
when the factor has learned the sphere's linear span instead of its tangent spaces).

Run: ``python -m benchmarks.probe_fit [--quick] [--dims 16] [--rank 32] [--losses exact probe probe-16]
[--seeds 0 1 2] [--steps 1500] --threads 1``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch

from learned_manifold.geometry import eigenpairs
from learned_manifold.mlp import FiLMResMLP
from learned_manifold_training.data import Sphere
from learned_manifold_training.losses import jacobian_matching

from .common import Table, environment, make_parser, parse_args, write_report

__all__ = ["fit", "main", "parse_loss"]

AMBIENT = 64


def parse_loss(name: str) -> int:
    """Probes per point of a loss name: ``"exact"`` → 0, ``"probe"`` → 1, ``"probe-K"`` → K."""
    if name == "exact":
        return 0
    if name == "probe":
        return 1
    if name.startswith("probe-") and name[6:].isdigit() and int(name[6:]) >= 1:
        return int(name[6:])
    raise ValueError(f"unknown loss {name!r}; valid: exact, probe, probe-K (K >= 1)")


def _loss(A: torch.Tensor, T: torch.Tensor, probes: int, generator: torch.Generator) -> torch.Tensor:
    """Per-point loss of the factor ``A`` ``(B, D, r)`` against ``P_T = TTᵀ`` (``T`` ``(B, D, d)``)."""
    if probes == 0:
        AtA = A.transpose(1, 2) @ A
        return AtA.pow(2).sum((1, 2)) - 2 * (T.transpose(1, 2) @ A).pow(2).sum((1, 2)) + T.shape[-1]
    total = A.new_zeros(A.shape[0])
    for _ in range(probes):
        v = torch.randn(A.shape[0], A.shape[1], generator=generator, dtype=A.dtype)
        Pv = (T @ (T.transpose(1, 2) @ v.unsqueeze(-1))).squeeze(-1)
        total = total + jacobian_matching(A, v, Pv)
    return total / probes


def fit(d: int, rank: int, probes: int, seed: int, cfg: dict) -> dict:
    """Train one factor network on S^d in R⁶⁴ by the loss with ``probes`` probes (0: exact); score it."""
    sphere = Sphere(d, AMBIENT)
    scale = math.sqrt(AMBIENT)  # unit-RMS coordinates, as the trainer's standardised, c_in-scaled input
    torch.manual_seed(seed)
    net = FiLMResMLP((AMBIENT,), rank, hidden=cfg["hidden"], depth=cfg["depth"], emb_dim=cfg["emb_dim"],
                     norm_feature=True)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg["steps"])
    data_gen, probe_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(10_000 + seed)
    sigma = torch.full((1,), cfg["sigma"])
    start = time.perf_counter()
    for _ in range(cfg["steps"]):
        x = sphere.sample(cfg["batch"], generator=data_gen)
        A = net(x * scale, sigma).reshape(-1, AMBIENT, rank)
        loss = _loss(A, sphere.tangent_basis(x), probes, probe_gen).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        x = sphere.sample(cfg["test"], generator=torch.Generator().manual_seed(99))
        A = net(x * scale, sigma).reshape(-1, AMBIENT, rank)
        pairs = eigenpairs(A)
        V, T = pairs.vectors[..., :d], sphere.tangent_basis(x)
        error = (2 * d - 2 * (V.transpose(1, 2) @ T).pow(2).sum((1, 2))).clamp_min(0).sqrt()
        radial = x / x.norm(dim=1, keepdim=True)
        mass = (A.transpose(1, 2) @ radial.unsqueeze(-1)).pow(2).sum((1, 2))
    return {"d": d, "rank": rank, "probes": probes, "seed": seed, "tangent_error": error.mean().item(),
            "radial_mass": mass.mean().item(), "eigenvalue_d_plus_1": pairs.values[:, d].mean().item(),
            "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> dict:
    """Run every (dimension, loss, seed) and write ``probe_fit.json`` / ``.md``; returns the results."""
    parser = make_parser(__doc__.splitlines()[0], results="benchmarks/results/<device>/probe-fit", threads=1)
    parser.add_argument("--dims", type=int, nargs="+", default=[16], help="sphere dimensions d")
    parser.add_argument("--rank", type=int, default=None, help="factor rank (default 2d)")
    parser.add_argument("--losses", nargs="+", default=["exact", "probe", "probe-16"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1500)
    args = parse_args(parser, argv)
    for name in args.losses:
        try:
            parse_loss(name)
        except ValueError as err:
            parser.error(f"--losses: {err}")
    cfg = {"steps": args.steps, "batch": 512, "hidden": 256, "depth": 3, "emb_dim": 128, "lr": 1e-3,
           "sigma": 1 / 64, "test": 500}
    if args.quick:
        cfg.update(steps=20, batch=64, hidden=32, depth=1, emb_dim=16, test=50)
    out = args.out
    env = environment(args.device)
    runs = []
    for d in args.dims:
        rank = args.rank if args.rank is not None else 2 * d
        for name in args.losses:
            for seed in args.seeds:
                run = {"loss": name, **fit(d, rank, parse_loss(name), seed, cfg)}
                runs.append(run)
                print(f"S^{d} rank {rank} {name} seed {seed}: error {run['tangent_error']:.3f}, radial mass "
                      f"{run['radial_mass']:.3f}, {run['seconds']:.0f} s", flush=True)
    table = Table("Fit of S^d's tangent projector in R⁶⁴ after the same steps, per loss and seed (held-out points)",
                  ["d", "rank", "loss", "seed", "tangent error", "radial mass", "eigenvalue d+1", "time"])
    for r in runs:
        table.add(r["d"], r["rank"], r["loss"], r["seed"], f"{r['tangent_error']:.3f}", f"{r['radial_mass']:.3f}",
                  f"{r['eigenvalue_d_plus_1']:.3f}", f"{r['seconds']:.0f} s")
    settings = {"dims": args.dims, "rank": args.rank or "2d", "losses": args.losses, "seeds": args.seeds,
                "network": f"FiLMResMLP {cfg['hidden']} × {cfg['depth']}, emb {cfg['emb_dim']}, norm feature",
                "training": f"{cfg['steps']} Adam steps (lr {cfg['lr']}, cosine), batch {cfg['batch']}, "
                            f"σ input {cfg['sigma']:.4g}", "threads": torch.get_num_threads(), "quick": args.quick}
    notes = ["A random d-plane in R^64 scores about sqrt(2d(1 − d/64)); a factor that learned the sphere's "
             "(d+1)-dimensional span instead of its tangent spaces keeps radial mass and eigenvalue d+1 near 1."]
    results = {"runs": runs}
    _, md_path = write_report(out, "probe_fit", title="Fitting a sphere's tangent projector: exact loss against "
                              "probe estimators", env=env, settings=settings, tables=[table], results=results,
                              notes=notes)
    print(md_path.read_text())
    return results


if __name__ == "__main__":
    main()
