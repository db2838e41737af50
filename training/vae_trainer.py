"""Training the VAE of the latent-space comparison (SPEC §11), with the metric-matching trainer's conventions.

Two stages on one step counter, ``0 … steps + std_steps``:

1. ``steps`` steps of the ELBO: encoder ``q(z | x) = N(m, diag e^ℓ)``, decoder mean ``μ(z)`` and, for this
   stage only, one learned per-coordinate decoder std; loss ``½Σ((x − μ(z))²/σ₀² + 2 log σ₀) + β KL``.
2. ``std_steps`` steps fitting the RBF precision of `learned_manifold.vae.VAE` with the mean fixed (Arvanitidis
   et al. 2018): centres ``c_k`` by k-means of the training codes (seeded k-means++ then Lloyd),
   ``λ_k = ½ (a · mean_{z ∈ C_k} ‖z − c_k‖)^{-2}`` (``a`` = ``rbf_scale``), and ``W = exp(ω) ≥ 0`` by the
   Gaussian likelihood of the data at codes sampled from ``q``.

Conventions shared with `learned_manifold_training.trainer`: every batch is drawn by a generator keyed by
``(seed, step)``, so an interrupted and resumed run reaches the same weights; the VAE file (`save_vae`) and
``OUT.train-state.pt`` are written atomically at every checkpoint (the state first); ``OUT.lock`` keeps a second
run off the same file; the output is checked before any work; SIGINT/SIGTERM save a checkpoint and raise
`TrainingInterrupted`; non-finite losses or weights raise `TrainingDiverged` before anything is written. One
process (no DDP): a VAE of this comparison trains in minutes on a CPU.

The caller's torch settings do not change the run: it trains under ``torch.no_grad()``/``inference_mode()``
(gradients are switched on inside), inside a caller's ``torch.autocast`` (switched off: `full_precision`) and
with ``torch.set_default_dtype(torch.float64)`` (the networks are built and trained in float32), reaching the
same weights. Memory: besides the caller's data, one float32 copy of the standardised training rows (the
statistics and the fingerprint are summed chunk by chunk, `standardisation`, `data_summary`).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import numbers
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

import learned_manifold
from learned_manifold.model_file import ModelFileError, atomic_write_bytes
from learned_manifold.models import MAX_DEPTH, MAX_WIDTH, check_int, check_real
from learned_manifold.precision import full_precision
from learned_manifold.vae import (
    MAX_CENTRES,
    MAX_CONV_DEPTH,
    MAX_LATENT,
    VAE,
    VAE_ARCHS,
    VAEConfig,
    training_spread_limit,
)
from learned_manifold.vae_file import load_vae, read_vae_metadata, save_vae

from .backbone_spec import is_image_shape
from .batches import same_fingerprint, split_rows, standardisation, standardised_copy
from .config import MAX_BATCH, MAX_SEED, MAX_STEPS
from .data.stream import ArraySource, data_summary
from .outputs import OutputLock, check_output, load_state, other_kinds_state, state_path, write_failed
from .progress import Progress
from .resume import VAE_STATE_VERSION, check_vae_resume
from .runtime import (
    StopRequest,
    TrainingInterrupted,
    caller_state_off,
    check_health,
    check_training_tensor,
    resolve_device,
)
from .vae_std import encode_data, kmeans, rbf_bandwidths, std_growth

__all__ = ["VAETrainConfig", "VAETrainResult", "encode_data", "kmeans", "rbf_bandwidths", "std_growth", "train_vae"]

_MAX_KMEANS_POINTS = 20_000


@dataclass
class VAETrainConfig:
    """Settings of one VAE run, each checked on construction (a ``TypeError``/``ValueError`` naming the field).

    Attributes:
        latent_dim: ``d``. steps: ELBO steps; std_steps: RBF-precision steps; batch_size: points per step.
        arch: ``"auto"`` (``"conv"`` for image-shaped points ``(H, W)``/``(C, H, W)`` with ``H, W ≥ 4``, the rule
            of `train`'s backbone ``"auto"``, `is_image_shape`; else ``"mlp"``), ``"mlp"``,
            ``"conv"``; hidden, depth, channels: sizes (`VAEConfig`).
        lr: Adam rate of stage 1 (cosine decay to lr/10); std_lr: Adam rate of the log-weights in stage 2.
        kl_weight: ``β`` of the KL term. n_centres: ``K`` (capped at the number of training points).
        rbf_scale: ``a`` in ``λ_k`` (larger: wider kernels, a gentler wall). zeta: precision floor ``ζ`` in
            standardised units (far from the data the std is ``s/sqrt(ζ)``, ``s`` the data's RMS radius).
        val_points: held-out points for the final validation. checkpoint_every: checkpoint period (0: at the
            end and on interruption only). seed: the data split, initialisation, k-means and every batch.
    """

    latent_dim: int = 2
    steps: int = 3000
    std_steps: int = 1000
    batch_size: int = 256
    arch: str = "auto"
    hidden: int = 128
    depth: int = 2
    channels: int = 16
    lr: float = 2e-3
    std_lr: float = 3e-2
    kl_weight: float = 1.0
    n_centres: int = 32
    rbf_scale: float = 1.0
    zeta: float = 1.0
    val_points: int = 200
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.latent_dim, "latent_dim", 1, MAX_LATENT)
        check_int(self.steps, "steps", 1, MAX_STEPS)
        check_int(self.std_steps, "std_steps", 0, MAX_STEPS)
        check_int(self.batch_size, "batch_size", 1, MAX_BATCH)
        if self.arch not in ("auto", *VAE_ARCHS):
            raise ValueError(f"arch must be one of {('auto', *VAE_ARCHS)}, got {self.arch!r:.60}")
        check_int(self.hidden, "hidden", 1, MAX_WIDTH)
        if self.arch == "conv":
            _check_conv_depth(self.depth)
        check_int(self.depth, "depth", 0, MAX_DEPTH)
        check_int(self.channels, "channels", 1, MAX_WIDTH)
        if self.arch == "conv":  # the VAE's own rule (its width): refused here, before the data are read
            _check_conv_sizes(self.depth, self.channels)
        for name in ("lr", "std_lr", "rbf_scale", "zeta"):
            setattr(self, name, check_real(getattr(self, name), name, positive=True))
        self.kl_weight = check_real(self.kl_weight, "kl_weight", nonnegative=True)
        check_int(self.n_centres, "n_centres", 1, MAX_CENTRES)
        check_int(self.val_points, "val_points", 1, 2**31)
        check_int(self.checkpoint_every, "checkpoint_every", 0, MAX_STEPS)
        check_int(self.seed, "seed", 0, MAX_SEED)  # train's limit: DATA is read with the same seeds

    def vae_config(self, data_shape: tuple[int, ...], n_train: int) -> VAEConfig:
        """The `VAEConfig` for points of ``data_shape`` (``n_centres`` capped at ``n_train``)."""
        arch = self.arch if self.arch != "auto" else ("conv" if is_image_shape(tuple(data_shape)) else "mlp")
        if arch == "conv":
            _check_conv_depth(self.depth)
        return VAEConfig(data_shape=tuple(data_shape), latent_dim=self.latent_dim, arch=arch, hidden=self.hidden,
                         depth=self.depth, channels=self.channels, n_centres=min(self.n_centres, n_train),
                         zeta=self.zeta)


def _check_conv_sizes(depth: int, channels: int) -> None:
    """`VAEConfig`'s rule for the conv backbone's sizes (``channels · 2**depth`` at most `MAX_WIDTH`), asked of
    `VAEConfig` itself on the smallest image, so that the trainer holds no copy of it."""
    VAEConfig(data_shape=(1, 1), latent_dim=1, arch="conv", depth=depth, channels=channels)


def _check_conv_depth(depth: object) -> None:
    """The conv backbone's ``depth`` stride-2 stages: 1 to `MAX_CONV_DEPTH` (a non-integer is left to `check_int`)."""
    if isinstance(depth, numbers.Integral) and not isinstance(depth, bool) and not 1 <= depth <= MAX_CONV_DEPTH:
        raise ValueError(f"depth must be in [1, {MAX_CONV_DEPTH}] for the conv architecture (stride-2 stages; "
                         f"arch 'auto' picks it for images), got {depth}")


@dataclass
class VAETrainResult:
    """What `train_vae` returns: the VAE (eval mode), its file, the final validation and the loss history."""

    vae: VAE
    path: Path | None
    validation: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    stopped_at: int = 0
    already_complete: bool = False  # a resume of a finished run: nothing trained, the file left as it was


# ---------------------------------------------------------------------------------------------------------
# k-means and the RBF precision


# ---------------------------------------------------------------------------------------------------------
# the loop


def _lr(step: int, total: int) -> float:
    warm = max(1, total // 20)
    if step < warm:
        return (step + 1) / warm
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


class _Run:
    """The state of one run: the VAE, stage-1 decoder log-std, stage-2 log-weights and the active optimiser."""

    def __init__(self, vae: VAE, cfg: VAETrainConfig):
        self.vae, self.cfg = vae, cfg
        dev = vae.scale.device
        # σ₀ starts at the standardised data's per-coordinate RMS, 1/sqrt(D): starting at 1 made the reconstruction
        # term worth less than the KL of any informative code, and short runs collapsed to the prior
        self.log_std0 = nn.Parameter(torch.full((vae.dim,), -0.5 * math.log(vae.dim), device=dev,
                                                dtype=torch.float32))
        self.omega = nn.Parameter(torch.zeros(vae.dim, vae.config.n_centres, device=dev, dtype=torch.float32))
        self.stage1 = [*vae.encoder.parameters(), *vae.decoder.parameters(), self.log_std0]
        self.opt1 = torch.optim.Adam(self.stage1, lr=cfg.lr)
        self.opt2: torch.optim.Optimizer | None = None

    def state(self, step: int, seconds: float, cfg_json: str, fingerprint: list[float], digest: str) -> bytes:
        buf = io.BytesIO()
        torch.save({"step": step, "seconds": seconds, "vae": self.vae.state_dict(), "log_std0": self.log_std0.data,
                    "omega": self.omega.data, "stage2": self.opt2 is not None,
                    "optimizer": (self.opt2 or self.opt1).state_dict(), "config": cfg_json,
                    "fingerprint": fingerprint, "data_digest": digest}, buf)
        return buf.getvalue()

    def load(self, state: dict) -> None:
        self.vae.load_state_dict(state["vae"])
        self.log_std0.data.copy_(state["log_std0"])
        self.omega.data.copy_(state["omega"])
        if state["stage2"]:
            self.opt2 = torch.optim.Adam([self.omega], lr=self.cfg.std_lr)
            self.opt2.load_state_dict(state["optimizer"])
        else:
            self.opt1.load_state_dict(state["optimizer"])

    @torch.no_grad()
    def start_stage2(self, x: Tensor) -> None:
        """k-means of the codes, bandwidths, and ``ω`` started at the residual precision of the data."""
        cfg, vae = self.cfg, self.vae
        g = torch.Generator().manual_seed(cfg.seed * 7919 + 17)
        pick = torch.randperm(x.shape[0], generator=g)[:_MAX_KMEANS_POINTS].to(x.device)
        m = vae.encoder(self._shaped(x[pick])).chunk(2, dim=-1)[0]
        centres, labels = kmeans(m.cpu().double(), vae.config.n_centres, generator=g)
        vae.centres.copy_(centres)
        vae.bandwidths.copy_(rbf_bandwidths(m.cpu().double(), centres, labels, cfg.rbf_scale))
        resid = (vae.decode_standardised(m) - x[pick].flatten(1)).pow(2).mean(0)  # (D,) residual variance
        feats = vae.rbf(m).sum(-1).mean()
        w0 = ((1.0 / resid.clamp_min(1e-12) - cfg.zeta).clamp_min(1e-6) / feats.clamp_min(1e-12))
        self.omega.data.copy_(w0.log().unsqueeze(-1).expand_as(self.omega))
        self.opt2 = torch.optim.Adam([self.omega], lr=cfg.std_lr)

    def _shaped(self, x: Tensor) -> Tensor:
        if self.vae.config.arch == "mlp":
            return x.flatten(1)
        return x.reshape(x.shape[0], -1, *self.vae.data_shape[-2:])

    def loss(self, x: Tensor, eps: Tensor, stage2: bool) -> Tensor:
        """Per-batch mean loss of the active stage; ``x`` standardised ``(B, *shape)``, ``eps`` ``(B, d)``."""
        vae, flat = self.vae, x.flatten(1)
        with torch.set_grad_enabled(not stage2):
            m, logvar = vae.encoder(self._shaped(x)).chunk(2, dim=-1)
            logvar = logvar.clamp(-30.0, 20.0)
            z = m + torch.exp(0.5 * logvar) * eps
            mu = vae.decode_standardised(z)
        if stage2:
            prec = vae.precision_standardised(z.detach(), self.omega.exp())
            return 0.5 * (prec * (flat - mu.detach()).pow(2) - prec.log()).sum(-1).mean()
        log_std = self.log_std0.clamp_min(math.log(1e-4))
        nll = 0.5 * ((flat - mu).pow(2) * torch.exp(-2 * log_std) + 2 * log_std).sum(-1)
        kl = 0.5 * (m.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
        return (nll + self.cfg.kl_weight * kl).mean()


@full_precision
@caller_state_off
def train_vae(
    data: Tensor,
    config: VAETrainConfig | None = None,
    *,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str | torch.device | None = "auto",
    progress: bool = True,
    stop_after: int | None = None,
) -> VAETrainResult:
    """Train a VAE with the RBF decoder precision on ``data`` ``(N, *data_shape)`` (module docstring).

    Everything checkable is checked first: the config, the data (finite floats, ``N ≥ 10``), the device and the
    output (`check_output`: no existing file unless ``resume``/``overwrite``, no link, folder or device).

    Args:
        data: training points; a held-out split of ``min(val_points, N/5)`` is kept for validation.
        config: `VAETrainConfig` (defaults if ``None``).
        out: VAE file to write (atomically, at every checkpoint and at the end); ``None`` keeps it in memory.
        resume: continue from ``out`` and ``OUT.train-state.pt`` (same data and config required; its recipe version
            checked: `training/resume.py`; a metric-matching run's state is refused before the data are read).
        overwrite: replace an existing ``out``.
        device: ``"auto"`` (CUDA when present) or a torch device.
        progress: show a tqdm bar with the loss (plain lines where stderr is not a terminal: `Progress`).
        stop_after: stop (after a checkpoint) once this many steps are done: simulates an interruption.

    Returns:
        `VAETrainResult` with the VAE in eval mode and ``validation``: reconstruction RMSE on held-out points
        (data units, and relative to the data's RMS radius) and `std_growth`.

    Raises:
        TypeError, ValueError: bad settings, data, device or output (before any work); `TrainingDiverged`;
        `TrainingInterrupted` (SIGINT/SIGTERM, after a checkpoint); `OutputError` when a write fails.

    Works the same under ``torch.no_grad()``/``inference_mode()``, a caller's ``torch.autocast`` (switched off) and
    a float64 default dtype (module docstring).
    """
    cfg = VAETrainConfig() if config is None else config
    if not isinstance(cfg, VAETrainConfig):
        raise TypeError(f"config must be a VAETrainConfig, got {type(cfg).__name__}")
    check_training_tensor(data)
    cfg.vae_config(tuple(data.shape[1:]), data.shape[0])  # the architecture fits the data (arch, depth)
    total = cfg.steps + cfg.std_steps
    if stop_after is not None:
        check_int(stop_after, "stop_after", 0, total)
    if resume and out is None:
        raise ValueError("resume needs the output path `out`")
    dev = resolve_device(device)
    out = Path(out) if out is not None else None
    with OutputLock(out) if out is not None else contextlib.nullcontext():
        if out is not None:
            check_output(out, resume=resume, overwrite=overwrite)
            other = other_kinds_state(out, vae=True) if resume else None
            if other is not None:  # a metric-matching run's state: refused at once, before the data are read
                check_vae_resume(out, other, cfg)
        return _train(data.float(), cfg, out, resume, dev, progress, total if stop_after is None else stop_after)


def _finished_vae(out: Path, total: int, dev: torch.device) -> VAETrainResult | None:
    """A resume's result where ``out`` holds the finished run of ``total`` steps (its state's settings and data
    checked before), else ``None``."""
    try:
        extra = read_vae_metadata(out)["extra"] if out.exists() else {}
    except ModelFileError:
        return None
    if extra.get("complete") is not True or extra.get("step") != total:
        return None
    vae = load_vae(out, map_location=dev)  # float32: `caller_state_off` set the default dtype
    return VAETrainResult(vae, out, extra.get("validation", {}), stopped_at=total, already_complete=True)


def _train(data: Tensor, cfg: VAETrainConfig, out: Path | None, resume: bool, dev: torch.device, progress: bool,
           end: int) -> VAETrainResult:
    total = cfg.steps + cfg.std_steps
    source = ArraySource(data)  # read chunk by chunk: no float64 copy of the data, one standardised copy
    train_rows, val_rows = split_rows(len(source), cfg.val_points, cfg.seed)
    n_train, n_val = int(train_rows.numel()), int(val_rows.numel())
    val_x = source.rows(val_rows)
    scale, mean = standardisation(source, train_rows)
    x_std = standardised_copy(source, train_rows, scale, mean, dev)  # (n_train, *shape) float32
    vcfg = cfg.vae_config(tuple(data.shape[1:]), n_train)
    with torch.random.fork_rng(devices=[]):  # the CPU generator alone: `torch.manual_seed` reseeds CUDA's too
        torch.default_generator.manual_seed(cfg.seed)
        vae = VAE(vcfg, scale=scale, mean=mean).to(dev)
    vae.input_spread_max = training_spread_limit(x_std.flatten(1).norm(dim=-1))  # for `far_inputs` (`encode_data`)
    run = _Run(vae, cfg)
    cfg_json = json.dumps({**asdict(cfg), "state_version": VAE_STATE_VERSION})  # the recipe: `check_vae_resume`
    fingerprint, digest = data_summary(source)  # the digest: the sums miss reordered rows or columns
    start, before = 0, 0.0
    if resume:
        state = load_state(out, dev)  # one line for a missing or damaged state
        check_vae_resume(out, state, cfg)  # its kind, settings and recipe version
        if (state.get("data_digest", digest) != digest  # states before the digest: the sums only
                or not same_fingerprint(state["fingerprint"], fingerprint)):
            raise ValueError(f"cannot resume {str(out)!r}: the data differ from the data it was trained on")
        run.load(state)
        start, before = int(state["step"]), float(state["seconds"])
        finished = _finished_vae(out, total, dev) if start >= total else None
        if finished is not None:  # the file is the result: its end phase (validation, the file) is not redone
            return finished
    extra = {"num_points": data.shape[0], "num_train_points": n_train, "num_val_points": n_val,
             "seed": cfg.seed, "train_config": asdict(cfg), "library_version": learned_manifold.__version__,
             "input_spread_max": vae.input_spread_max}
    saved = [start if resume else None]

    def save(step: int, seconds: float, complete: bool, validation: dict | None = None) -> None:
        if out is None:
            return
        if run.opt2 is not None:
            vae.std_weights.copy_(run.omega.detach().exp())
        meta = {"complete": complete, "step": step, "total_steps": total, **extra,
                "training_seconds": round(seconds, 3), **({"validation": validation} if validation else {})}
        try:
            atomic_write_bytes(state_path(out), run.state(step, seconds, cfg_json, fingerprint, digest))
            save_vae(vae, out, extra=meta)
        except OSError as err:
            raise write_failed(out, err, saved[0]) from None
        saved[0] = step

    history: list[dict] = []
    bar = Progress(total, start, progress, "train-vae")  # plain lines where stderr is no terminal
    t0, running, logged = time.perf_counter(), torch.zeros((), device=dev, dtype=torch.float32), start
    with StopRequest() as stop, contextlib.closing(bar):
        for step in range(start, end):
            stage2 = step >= cfg.steps
            if stage2 and run.opt2 is None:
                run.start_stage2(x_std)
            opt, params = (run.opt2, [run.omega]) if stage2 else (run.opt1, run.stage1)
            g = torch.Generator(device=dev).manual_seed(cfg.seed * 1_000_003 + step)
            idx = torch.randint(x_std.shape[0], (cfg.batch_size,), generator=g, device=dev)
            eps = torch.randn(cfg.batch_size, cfg.latent_dim, generator=g, device=dev, dtype=torch.float32)
            k, n = (step - cfg.steps, cfg.std_steps) if stage2 else (step, cfg.steps)
            for group in opt.param_groups:
                group["lr"] = (cfg.std_lr if stage2 else cfg.lr) * _lr(k, n)
            loss = run.loss(x_std[idx], eps, stage2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            running += loss.detach()
            done = step + 1
            if done % 10 == 0 or done == end or done == cfg.steps:
                check_health(done, running, params)
            if done % 50 == 0 or done == end or done == cfg.steps:
                history.append({"step": done, "stage": 2 if stage2 else 1, "loss": float(running) / (done - logged)})
                running.zero_()
                logged = done
                bar.set_postfix(stage=2 if stage2 else 1, loss=f"{history[-1]['loss']:.4g}")
            bar.update(1)
            if stop.requested:
                save(done, before + time.perf_counter() - t0, False)
                raise TrainingInterrupted(done, total, out)
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < end:
                save(done, before + time.perf_counter() - t0, False)
        seconds = time.perf_counter() - t0
        if end < total:
            save(end, before + seconds, False)
            return VAETrainResult(vae.eval(), out, {}, history, seconds, end)
        if run.opt2 is None:  # std_steps = 0: centres and bandwidths are still fitted, W from the residuals
            run.start_stage2(x_std)
        vae.std_weights.copy_(run.omega.detach().exp())
        vae.eval().requires_grad_(False)
        validation = _validate(vae, val_x.to(dev), _train_codes(vae, source, train_rows), scale)
        save(end, before + seconds, True, validation)
    return VAETrainResult(vae, out, validation, history, seconds, end)


@torch.no_grad()
def _train_codes(vae: VAE, source: ArraySource, rows: Tensor, batch: int = 4096) -> Tensor:
    """Posterior means of the training rows ``(n_train, d)`` on the VAE's device: `encode_data` of the rows in
    data units, read ``batch`` rows at a time (no copy of all of them)."""
    dev = vae.scale.device
    return torch.cat([vae.encode(source.rows(part).to(dev)) for part in rows.split(batch)])


@torch.no_grad()
def _validate(vae: VAE, val_x: Tensor, codes: Tensor, scale: float) -> dict:
    """Reconstruction error on held-out points (data units, and relative to the data's RMS radius) and how much
    the decoder std grows at 10× the latent radius (`std_growth`)."""
    if val_x.shape[0] == 0:
        return std_growth(vae, codes)
    err = (vae.decode(vae.encode(val_x)) - val_x).flatten(1).pow(2).sum(-1).mean().sqrt()
    return {"reconstruction_rmse": float(err), "relative_reconstruction_error": float(err) / scale,
            **std_growth(vae, codes)}
