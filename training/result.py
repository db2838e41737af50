"""What `training.trainer.train` returns (`TrainResult`), and the result of a resume of a finished run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from learned_manifold.model_file import ModelFileError, load_model, read_metadata
from learned_manifold.models import MetricModel

from .config import TrainConfig
from .outputs import is_complete

__all__ = ["TrainResult", "finished_result"]


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


def finished_result(out: Path, cfg: TrainConfig, device: torch.device) -> TrainResult | None:
    """A resume's result (``already_complete``) where ``out`` holds the finished run of ``cfg.steps`` steps (after
    its state's settings and data checks, or where that state is damaged); else ``None``."""
    try:
        meta = read_metadata(out)["extra"] if out.exists() and is_complete(out) else {}
    except ModelFileError:
        return None
    if meta.get("total_steps", meta.get("step")) != cfg.steps:  # another length: the state's settings check says so
        return None
    return TrainResult(model=load_model(out, map_location=device), path=out, validation=meta.get("validation", {}),
                       stopped_at=int(meta.get("step", cfg.steps)), precision=meta.get("precision", cfg.precision),
                       precision_probe=meta.get("precision_probe", {}), already_complete=True)
