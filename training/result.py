"""What `training.trainer.train` returns (`TrainResult`), and the result of a resume of a finished run."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from learned_manifold.model_file import ModelFileError, ModelFileWarning, load_model, read_metadata
from learned_manifold.models import MetricModel, ModelConfig

from .config import TrainConfig
from .outputs import is_complete

__all__ = ["TrainResult", "file_differences", "finished_result", "load_judged"]


@dataclass
class TrainResult:
    """What `train` returns: the (EMA) model, its file, the last validation and the loss history.

    ``precision`` is the precision the loop ran in; ``precision_probe`` why (`choose_precision`'s record: for
    ``"auto"``, the measured fp32 and bf16 step times; also in the model file's extra metadata).
    """

    model: MetricModel
    path: Path | None
    validation: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    samples_per_second: float = 0.0
    stopped_at: int = 0
    precision: str = "fp32"
    precision_probe: dict = field(default_factory=dict)
    already_complete: bool = False  # a resume of a finished run: nothing trained, the file left as it was


def finished_result(out: Path, cfg: TrainConfig, device: torch.device,
                    expect: tuple[ModelConfig, int] | None = None) -> TrainResult | None:
    """A resume's result (``already_complete``) where ``out`` holds the finished run of ``cfg.steps`` steps (after
    its state's settings and data checks), else ``None``.

    ``expect``: where the state is damaged (its checks impossible), the resumed run's model config and number of
    points, compared with what the file records (`file_differences`: the data's shape and point count, their scale
    through the bandwidth range in data units, the model's settings, the seed).

    Raises:
        ValueError: ``expect`` differs from the finished file, naming each difference.
    """
    try:
        meta = read_metadata(out) if out.exists() and is_complete(out) else {"extra": {}}
    except ModelFileError:
        return None
    extra = meta["extra"]
    if extra.get("total_steps", extra.get("step")) != cfg.steps:  # another length: the state's settings check says so
        return None
    if expect is not None:
        said = file_differences(meta, cfg, *expect)
        if said:
            raise ValueError(f"cannot resume {str(out)!r}: its training state is damaged, and the finished model file "
                             f"holds a run on other data or with other settings ({said}); train again with "
                             "--overwrite (overwrite=True), or restore the training state")
    return TrainResult(model=load_judged(out, map_location=device), path=out, validation=extra.get("validation", {}),
                       stopped_at=int(extra.get("step", cfg.steps)), precision=extra.get("precision", cfg.precision),
                       precision_probe=extra.get("precision_probe", {}), already_complete=True)


_COMPARED = ("data_shape", "rank", "arch", "arch_kwargs", "centred", "loss", "tikhonov", "sampler", "input_scaling",
             "shared_trunk")


def file_differences(meta: dict, cfg: TrainConfig, mcfg: ModelConfig, num_points: int) -> str:
    """How a run with the settings ``cfg``, model config ``mcfg`` and ``num_points`` data points differs from the
    model file's metadata ``meta`` (`read_metadata`), one ``name: file X, now Y`` per difference (``""``: none).
    The bandwidth range in data units stands for the data's scale (``s``, SPEC §1)."""
    saved, now = meta.get("config", {}), json.loads(json.dumps(asdict(mcfg)))  # JSON's lists, as the file holds
    diff = [(k, saved.get(k), now[k]) for k in _COMPARED if k in saved and saved[k] != now[k]]
    diff += [(k, saved[k], now[k]) for k in ("sigma_min", "sigma_max")
             if k in saved and not math.isclose(saved[k], now[k], rel_tol=1e-5)]
    extra = meta.get("extra", {})
    diff += [(k, extra[k], v) for k, v in (("num_points", num_points), ("seed", cfg.seed))
             if k in extra and extra[k] != v]
    return "; ".join(f"{k}: file {a!r}, now {b!r}" for k, a, b in diff)


def load_judged(path: str | Path, map_location: str | torch.device = "cpu") -> MetricModel:
    """`load_model` of a model whose training verdict the caller prints itself (the demos, which keep it in their
    report; ``train --resume`` of a finished run, whose command prints `distrust`'s warnings): without the
    `ModelFileWarning` that the training checks did not trust it (or could not verify it), which would repeat
    them. Every other caution of
    the file still warns."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".* (was not trusted|could not be verified) by the checks at the end of "
                                r"its training",
                                ModelFileWarning)
        return load_model(path, map_location=map_location)
