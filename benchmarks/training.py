"""Training speed and accuracy per precision/compile setting, the default setting they give, and each recipe's cost.

All three run `learned_manifold_training.trainer.train`; a recipe's cost is its rate against a plain step's. The
timed runs themselves (`_run`, `_plain_rate`) are in `benchmarks.training_speed`.

Speed: each setting runs a short training on S⁸ in R⁶⁴ (10,000 points, mean-centred recipe: denoiser and
factor network both trained at every step). A global optimiser-step hook stamps the time after the warm-up
steps and after the measured steps, so the steady-state rate excludes start-up and ``torch.compile`` warm-up;
the trainer's own overall rate (which includes them) is reported beside it.

Accuracy: each setting then trains complete models on the torus (the demo's network and data size, two
seeds) and is scored by the tangent-projector error on fresh points at the σ the trainer chose (fp32
inference). The fp32 models are also scored with bf16-autocast inference (`LearnedCDC(precision="bf16")`).
A setting qualifies when its mean error is within 5% of fp32's; the default is the qualifying setting with the
shortest training wall time (compilation included), reported beside what the trainer's ``precision="auto"``
picks on the device (within seed noise the two can differ; ``benchmarks/RESULTS.md`` discusses it).

Settings: fp32; bf16 autocast; ``torch.compile`` with fp32 and with bf16; and ``precision="auto"``, whose
measured choice (`learned_manifold.precision.choose_precision`: the trainer times its step in fp32 and bf16)
is reported with the probe's times. A compile that fails, or does not finish within a time limit, is recorded
with its error text instead of stopping the run. The trainer and the plain step use torch's fused AdamW (CPU and CUDA).

Recipe cost: side by side, in rounds that rotate the order, the steady samples/s of the mean-centred `train`
recipes (fp32; EMA, schedule; `RECIPES`): the default (two networks, the factor matched to the denoiser's
Jacobian), the residual target of before, and one shared trunk (``shared_trunk``: a factor head and a denoiser
head on one backbone), and of a plain uncentred
metric-matching step of the same factor network (``a = ε``, AdamW, nothing else: the paper's recipe) on the
same data, batch and device; each recipe's ratio to the plain step is its price per sample.

Run: ``python -m benchmarks.training --device cpu|cuda [--quick] [--no-accuracy] [--recipe-only] [--rounds N]
[--compile-limit S] [--out DIR]`` (``--no-accuracy``: speed only, no torus trainings and so no default by the
rule; ``--recipe-only``: only the recipe comparison, written to ``training_recipe.json`` / ``.md``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch

from learned_manifold.evaluation import tangent_error
from learned_manifold.metrics import LearnedCDC
from learned_manifold.precision import native_bf16
from learned_manifold_training.config import DENOISER_WARMUP
from learned_manifold_training.data import get_dataset
from learned_manifold_training.schedule import fused_adamw
from learned_manifold_training.trainer import TrainConfig, train

from .common import (
    PAPER_NET,
    Table,
    compile_status,
    environment,
    fmt_num,
    fmt_time,
    make_parser,
    optimizer_settings,
    parse_args,
    sphere_points,
    write_report,
)
from .training_speed import _plain_rate, _run, _time_limit

__all__ = ["main", "settings_for", "whole_run_ratio"]

DENOISER_ALONE = "denoiser alone (the warm-up phase)"
NARROW = "narrow denoiser (half width)"
NARROW_ALONE = "narrow denoiser alone (its warm-up phase)"

N_POINTS = 10_000
SETTINGS = {  # name: (precision, compile)
    "fp32": ("fp32", False),
    "bf16 autocast": ("bf16", False),
    "torch.compile fp32": ("fp32", True),
    "torch.compile + bf16": ("bf16", True),
}
ACCURACY = {"data": "torus", "points": 4000, "test_points": 1000, "batch": 512, "seeds": (0, 1),
            "arch": {"hidden": 128, "depth": 3, "emb_dim": 64}}  # the demo's model
TOLERANCE = 0.05


def settings_for(device: torch.device, quick: bool) -> dict:
    """Network, batch, step counts and the compile time limit for ``device`` (``quick``: a smoke test)."""
    if quick:
        return {"arch": {"hidden": 64, "depth": 1, "emb_dim": 32}, "batch": 128, "warmup_steps": 3,
                "measured_steps": 10, "compile_limit_s": 20, "accuracy_steps": 30, "accuracy_seeds": (0,)}
    if device.type == "cuda":
        return {"arch": PAPER_NET, "batch": 1024, "warmup_steps": 20, "measured_steps": 200,
                "compile_limit_s": 600, "accuracy_steps": 2500, "accuracy_seeds": ACCURACY["seeds"]}
    return {"arch": {"hidden": 256, "depth": 3, "emb_dim": 128}, "batch": 512, "warmup_steps": 10,
            "measured_steps": 60, "compile_limit_s": 360, "accuracy_steps": 2500,
            "accuracy_seeds": ACCURACY["seeds"]}


RECIPES = {"default (Jacobian target)": {},
           "Jacobian target, factor on 1/2 of the batch": {"factor_fraction": 0.5},
           "Jacobian target, factor on 1/4 of the batch": {"factor_fraction": 0.25},
           "residual target": {"factor_target": "residual"},
           "shared trunk, residual target": {"shared_trunk": True, "factor_target": "residual"},
           "shared trunk, Jacobian target": {"shared_trunk": True},
           "denoiser frozen when the factor starts": {"freeze_denoiser": True},
           NARROW: {"denoiser_hidden": "half"},
           DENOISER_ALONE: {"denoiser_warmup": 0.99},
           NARROW_ALONE: {"denoiser_hidden": "half", "denoiser_warmup": 0.99}}
"""The mean-centred recipes compared with the plain step: name → `TrainConfig` overrides. Every recipe but
`DENOISER_ALONE` trains both networks at every measured step (``denoiser_warmup=0``; with ``freeze_denoiser`` the
denoiser trains on the first step only and is read, not trained, at every measured step); `DENOISER_ALONE` is the
denoiser's warm-up phase of a default run (the factor starts after the clock stops), `NARROW_ALONE` that of
`NARROW` (a denoiser of half the factor's hidden width, `TrainConfig.denoiser_hidden`). The default recipe's
Jacobian target costs one input-only backward pass of the denoiser (`learned_manifold_training.losses`)."""
ALONE_PHASE = {NARROW: NARROW_ALONE}
"""The warm-up phase of a recipe whose denoiser differs from the default's (else `DENOISER_ALONE`)."""


def whole_run_ratio(joint: float, alone: float, warmup: float) -> float:
    """The samples/s of a whole run, as a ratio to the plain step, of a recipe whose first ``warmup`` of the
    steps train the denoiser alone (ratio ``alone``) and the rest both networks (ratio ``joint``): the
    harmonic mean of the two phases weighted by their steps."""
    return 1.0 / (warmup / alone + (1.0 - warmup) / joint)


def _recipe_vs_plain(data: torch.Tensor, cfg: dict, device: torch.device, rounds: int = 3,
                     on_round: Callable[[dict], None] | None = None) -> dict:
    """Each recipe of `RECIPES` (fp32, `_run`) and the plain uncentred step of the same factor network, in
    rounds on the same device, the order rotated every round (so that no setting always runs first or after
    the same one on a busy machine); per-round rates, and per recipe the median over rounds of its ratio to the
    plain step of the same round. ``on_round`` is called with the comparison so far (`_recipe_summary`, status
    ``"partial"``) after every round but the last."""
    runs, network = [], None
    names = [*RECIPES, "plain"]
    for i in range(rounds):
        rates = {}
        for name in names[i % len(names):] + names[: i % len(names)]:
            if name == "plain":
                rates[name] = _plain_rate(data, cfg, device, network) if network else None
                continue
            r = _run(data, cfg, device, "fp32", False, recipe=RECIPES[name])
            if r["status"] != "ok":
                return {"status": r["status"], "error": f"{name}: {r.get('error')}", "rounds": runs}
            rates[name], network = r["steady_samples_per_s"], r["model_config"]
        if rates["plain"] is None:  # the plain step ran first in this round: it needed the network's settings
            rates["plain"] = _plain_rate(data, cfg, device, network)
        ratio = {n: rates[n] / rates["plain"] for n in RECIPES}
        warmup = DENOISER_WARMUP
        whole = {n: whole_run_ratio(ratio[n], ratio[ALONE_PHASE.get(n, DENOISER_ALONE)], warmup)
                 for n in RECIPES if n not in (DENOISER_ALONE, NARROW_ALONE)}
        runs.append({"samples_per_s": rates, "ratio": ratio, "whole_run_ratio": whole})
        print("recipes vs plain", runs[-1], flush=True)
        if on_round is not None and i + 1 < rounds:
            on_round(_recipe_summary(runs, network, f"partial: {i + 1} of {rounds} rounds"))
    return _recipe_summary(runs, network, "ok")


def _recipe_summary(runs: list[dict], network: dict, status: str) -> dict:
    """The recipe comparison from the rounds ``runs`` done: per recipe the median over them of its ratio."""
    medians = {n: statistics.median(r["ratio"][n] for r in runs) for n in RECIPES}
    whole_medians = {n: statistics.median(r["whole_run_ratio"][n] for r in runs) for n in runs[0]["whole_run_ratio"]}
    return {"status": status, "rounds": runs, "network": network, "ratio_median": medians,
            "whole_run_ratio_median": whole_medians, "denoiser_warmup": DENOISER_WARMUP}


def _accuracy(device: torch.device, cfg: dict, precision: str, compile_: bool) -> dict:
    """Complete trainings on the torus per seed: test tangent error (fp32 inference, and bf16 for fp32 models)."""
    test_x, manifold = get_dataset(ACCURACY["data"], ACCURACY["test_points"], seed=1000)
    test_x = test_x.to(device)
    basis = manifold.tangent_basis(test_x.cpu()).to(device)
    runs = []
    for seed in cfg["accuracy_seeds"]:
        data, _ = get_dataset(ACCURACY["data"], ACCURACY["points"], seed=seed)
        config = TrainConfig(steps=cfg["accuracy_steps"], batch_size=ACCURACY["batch"], seed=seed,
                             precision=precision, compile=compile_, val_points=400, **ACCURACY["arch"])
        limit = cfg["compile_limit_s"] + 600 if compile_ else 0
        start = time.perf_counter()
        with _time_limit(limit) as state:
            try:
                result = train(data, config, manifold=manifold, progress=False, device=device)
            except Exception as err:  # noqa: BLE001 - a failed setting is a result, not a crash
                return {"status": f"timed out after {limit} s" if state["expired"] else "failed",
                        "error": f"{type(err).__name__}: {err}"}
        wall = time.perf_counter() - start
        run = {"seed": seed, "wall_s": wall, "sigma": result.model.config.default_sigma}
        with torch.inference_mode():
            for inference in ("fp32", "bf16") if precision == "fp32" else ("fp32",):
                field = LearnedCDC(result.model, precision=inference)
                run[f"tangent_error_{inference}_inference"] = float(tangent_error(field, test_x, basis).mean())
        runs.append(run)
        print(f"  seed {seed}: {run}", flush=True)
    mean = lambda key: sum(r[key] for r in runs) / len(runs)  # noqa: E731
    out = {"status": "ok", "runs": runs, "wall_s": mean("wall_s"),
           "tangent_error": mean("tangent_error_fp32_inference")}
    if precision == "fp32":
        out["tangent_error_bf16_inference"] = mean("tangent_error_bf16_inference")
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark and write ``training.json`` / ``training.md``; returns the results."""
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--no-accuracy", action="store_true",
                        help="speed only: skip the torus trainings (and so the default by the rule)")
    parser.add_argument("--compile-limit", type=int, default=None,
                        help="seconds a compiled setting may take before it is recorded as timed out")
    parser.add_argument("--recipe-only", action="store_true",
                        help="only the recipes against the plain step (training_recipe.json / .md)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the recipe comparison")
    args = parse_args(parser, argv)
    device, cfg = args.device, settings_for(args.device, args.quick)
    if args.compile_limit is not None:
        if args.compile_limit < 1:
            parser.error(f"--compile-limit must be >= 1, got {args.compile_limit}")
        cfg["compile_limit_s"] = args.compile_limit
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    env = environment(device)
    data = sphere_points(N_POINTS, torch.device("cpu"), seed=0)
    if args.recipe_only:
        return _recipe_report(args, env, cfg, _recipe_vs_plain(data, cfg, device, args.rounds))

    results: dict = {}
    recipe: dict | None = None
    accuracy: dict = {}

    def report(done: bool = False) -> dict:  # after every setting and round: a stopped run keeps what it finished
        return _write(args, env, cfg, results, recipe, accuracy, done)

    for name, (precision, compile_) in SETTINGS.items():
        results[name] = _run(data, cfg, device, precision, compile_)
        print(name, results[name], flush=True)
        report()
    results["auto"] = _run(data, cfg, device, "auto", False)  # what the trainer measures and picks
    print("auto", results["auto"], flush=True)
    report()

    def partial_recipe(so_far: dict) -> None:
        nonlocal recipe
        recipe = so_far
        report()

    recipe = _recipe_vs_plain(data, cfg, device, args.rounds, on_round=partial_recipe)
    report()
    for name, (precision, compile_) in SETTINGS.items() if not args.no_accuracy else ():
        print(f"accuracy: {name}", flush=True)
        accuracy[name] = _accuracy(device, cfg, precision, compile_)
        report()
    return report(done=True)


def _write(args, env: dict, cfg: dict, results: dict, recipe: dict | None, accuracy: dict, done: bool) -> dict:
    """Write ``training.json`` / ``.md`` from what has been measured so far (``recipe``: ``None`` before the
    recipe comparison; ``done``: the whole run, whose markdown is also printed); returns the results."""
    reference = accuracy.get("fp32", {}).get("tangent_error")
    qualifying = {name: a for name, a in accuracy.items() if a["status"] == "ok" and reference is not None
                  and a["tangent_error"] <= (1 + TOLERANCE) * reference}
    default = min(qualifying, key=lambda n: qualifying[n]["wall_s"]) if qualifying else None
    auto = results.get("auto", {}).get("precision")
    choice = {"default_by_rule": default, "trainer_auto_precision": auto, "native_bf16": native_bf16(args.device),
              "auto_probe": results.get("auto", {}).get("precision_probe"),
              "trainer_default_compile": TrainConfig().compile,
              "rule": f"shortest training wall time among settings within {TOLERANCE:.0%} of fp32's tangent error"}

    base = results.get("fp32", {}).get("steady_samples_per_s")
    table = Table(f"Training samples/s, batch {cfg['batch']}, {cfg['measured_steps']} measured steps after "
                  f"{cfg['warmup_steps']} warm-up steps", ["setting", "steady samples/s", "vs fp32",
                                                         "overall samples/s (incl. warm-up)", "first step", "status"])
    for name, r in results.items():
        steady = r.get("steady_samples_per_s")
        speedup = f"{fmt_num(steady / base)}×" if steady and base else "n/a"
        compiled = SETTINGS.get(name, ("", False))[1]  # eager under TORCH_COMPILE_DISABLE=1: said in the status
        status = compile_status("ok", compiled) if r["status"] == "ok" else f"{r['status']}: {r['error'][:160]}"
        label = f"precision=auto (ran as {r.get('precision')})" if name == "auto" else name
        table.add(label, fmt_num(steady), speedup, fmt_num(r.get("overall_samples_per_s")),
                  fmt_time(r.get("first_step_s")), status)
    acc_table = Table(f"Accuracy: {ACCURACY['data']}, {ACCURACY['points']:,} points, {cfg['accuracy_steps']} steps "
                      f"of batch {ACCURACY['batch']}, network {ACCURACY['arch']}, seeds {list(cfg['accuracy_seeds'])}; "
                      f"test tangent error on {ACCURACY['test_points']:,} fresh points (mean over seeds)",
                      ["setting", "tangent error", "vs fp32", f"within {TOLERANCE:.0%}", "training wall time",
                       "status"])
    for name, a in accuracy.items():
        ok = a["status"] == "ok"
        err = a.get("tangent_error")
        acc_table.add(name, fmt_num(err, 4) if ok else "n/a",
                      f"{fmt_num(err / reference)}×" if ok and reference else "n/a",
                      ("yes" if name in qualifying else "no") if ok else "n/a", fmt_time(a.get("wall_s")),
                      compile_status("ok", SETTINGS[name][1]) if ok else f"{a['status']}: {a['error'][:160]}")
    bf16_inference = accuracy.get("fp32", {}).get("tangent_error_bf16_inference")
    if bf16_inference is not None:
        acc_table.add("fp32 model, bf16-autocast inference", fmt_num(bf16_inference, 4),
                      f"{fmt_num(bf16_inference / reference)}×", "", "", "ok")
    used = results.get("fp32", {}).get("optimizer", "n/a")
    settings = {
        "data": f"S⁸ in R⁶⁴ (sphere8), {N_POINTS:,} points",
        "network": f"FiLMResMLP {cfg['arch']}, rank 16, mean-centred (denoiser + factor every step)",
        "batch": cfg["batch"],
        "steps": f"{cfg['warmup_steps']} warm-up + {cfg['measured_steps']} measured",
        "optimizer": f"{used} (AdamW fused on CPU and CUDA"
                     + ("; the trainer's defaults)" if used == optimizer_settings(TrainConfig()) else ")"),
        "compile time limit": f"{cfg['compile_limit_s']} s",
        "default": choice,
        "accuracy": "skipped (--no-accuracy)" if args.no_accuracy else "measured",
        "quick": args.quick,
        "progress": "complete" if done else "partial: written after every setting and round, the run is going on "
                                            "or was stopped",
    }
    probe = choice["auto_probe"] or {}
    notes = [
        "Steady samples/s = batch × measured steps / wall time between the optimiser steps that close the warm-up "
        "and the measured steps (stamped by a global optimiser-step hook, CUDA synchronised at the stamps).",
        "Overall samples/s is TrainResult.samples_per_second: the whole loop, warm-up and compilation included.",
        "Settings run one after another, not interleaved: on a shared machine compare them with care.",
        f"Default by the rule ({choice['rule']}): "
        f"{'not measured (--no-accuracy)' if args.no_accuracy else default}. The trainer's precision='auto' "
        f"measured its step and ran as {auto} on this device (native bf16: {choice['native_bf16']}): "
        f"{probe.get('reason')}; compile is off by default.",
        *_RECIPE_NOTES,
    ]
    title = "Training throughput (learned_manifold_training.trainer.train)"
    recipe_tables = [] if recipe is None else [_recipe_table(recipe), _whole_run_table(recipe)]
    tables = [table, *recipe_tables, *([] if args.no_accuracy else [acc_table])]
    out = {"speed": results, "recipe_vs_plain": recipe or {"status": "not run yet"}, "accuracy": accuracy,
           "default": choice}
    _, md_path = write_report(args.out, "training", title=title, env=env, settings=settings, tables=tables,
                              results=out, notes=notes)
    if done:
        print(md_path.read_text())
    return out


_RECIPE_NOTES = [
    "Recipe / plain step: the price per sample of a mean-centred recipe (two networks: a second network, and "
    "with the Jacobian target one input-only backward pass of the denoiser; shared trunk: one more output "
    "column and the denoiser's loss; all: EMA, schedule, health checks) over "
    "the bare uncentred step of the same factor network (the paper's recipe). Each round runs every setting "
    "once, the order rotated; a ratio divides rates of the same round.",
]


def _recipe_table(recipe: dict) -> Table:
    names = list(RECIPES)
    table = Table("Mean-centred recipes vs a plain uncentred step of the same factor network (fp32, same batch "
                  "and device; rounds in rotated order)",
                  ["round", *(f"{n} samples/s" for n in names), "plain uncentred samples/s",
                   *(f"{n} / plain" for n in names)])
    for i, r in enumerate(recipe.get("rounds", []), 1):
        rates = r["samples_per_s"]
        table.add(i, *(fmt_num(rates[n]) for n in names), fmt_num(rates["plain"]),
                  *(f"{fmt_num(r['ratio'][n])}×" for n in names))
    if "ratio_median" in recipe:  # "ok", or "partial: ..." (the rounds done so far)
        label = "median" if recipe["status"] == "ok" else f"median so far ({recipe['status']})"
        table.add(label, *[""] * (len(names) + 1), *(f"{fmt_num(recipe['ratio_median'][n])}×" for n in names))
    else:
        table.add("failed", recipe["status"], str(recipe.get("error"))[:160], *["n/a"] * (2 * len(names) - 1))
    return table


def _whole_run_table(recipe: dict) -> Table:
    """Per recipe, the whole default run's samples/s over the plain step's (`whole_run_ratio`)."""
    warmup = recipe.get("denoiser_warmup", DENOISER_WARMUP)
    table = Table(f"A whole run (the first {warmup:.0%} of the steps the denoiser alone, then the recipe) vs the "
                  "plain step: the harmonic mean of the two phases' ratios", ["recipe", "rounds", "median"])
    for name, median in recipe.get("whole_run_ratio_median", {}).items():
        per_round = ", ".join(f"{fmt_num(r['whole_run_ratio'][name])}×" for r in recipe["rounds"])
        table.add(name, per_round, f"**{fmt_num(median)}×**")
    return table


def _recipe_report(args, env: dict, cfg: dict, recipe: dict) -> dict:
    """Write ``training_recipe.json`` / ``.md`` (``--recipe-only``) and return the comparison."""
    settings = {"data": f"S⁸ in R⁶⁴ (sphere8), {N_POINTS:,} points",
                "network": f"FiLMResMLP {cfg['arch']}, rank 16",
                "recipes": {n: f"mean-centred, {v or 'defaults'}" + ("" if n in (DENOISER_ALONE, NARROW_ALONE) else
                                ", denoiser and factor every step (no warm-up)") for n, v in RECIPES.items()},
                "batch": cfg["batch"], "steps": f"{cfg['warmup_steps']} warm-up + {cfg['measured_steps']} measured",
                "rounds": args.rounds, "quick": args.quick,
                "optimizer": f"AdamW, fused={fused_adamw([torch.zeros(1)], torch.device(args.device))} for the plain "
                             "step and the recipes alike (`schedule.fused_adamw`, the trainer's kernel)"}
    _, md_path = write_report(args.out, "training_recipe", title="The price of mean-centring per sample",
                              env=env, settings=settings,
                              tables=[_recipe_table(recipe), _whole_run_table(recipe)],
                              results={"recipe_vs_plain": recipe}, notes=_RECIPE_NOTES)
    print(md_path.read_text())
    return {"recipe_vs_plain": recipe}


if __name__ == "__main__":
    main()
