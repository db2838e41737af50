"""`TrainConfig` field names in settings errors rewritten as the ``learned-manifold train`` flags that set them.

The settings' checks (`TrainConfig`, `recipe_checks.check_recipe`) name the Python fields and write values the
Python way (``centred=True``, ``hidden: 256``, ``backbone 'unet'``); a command-line user gave flags
(``--uncentred``, ``--hidden 256``, ``--backbone unet``). `as_flags` turns the first into the second.
"""

from __future__ import annotations

import re
from dataclasses import fields

from .config import TrainConfig

__all__ = ["FLAGS", "as_flags"]

FLAGS = {**{f.name: "--" + f.name.replace("_", "-") for f in fields(TrainConfig)}, "centred": "--uncentred"}
"""Each `TrainConfig` field's flag (``centred`` is set by ``--uncentred``, its negation)."""

_OPTIONAL_BOOLS = ("final_norm", "norm_feature", "shared_trunk", "freeze_denoiser")
"""Fields whose flag has a ``--no-`` form (argparse.BooleanOptionalAction)."""

_FIELD = "(?<![-\\w])(" + "|".join(sorted(FLAGS, key=len, reverse=True)) + ")"
_VALUE = r"(True|False|None|'[^']*'|\"[^\"]*\"|[-+\w.]+)"


def _setting(name: str, value: str) -> str:
    """The flag(s) that give field ``name`` the Python literal ``value``: ``--hidden 256``, ``--no-shared-trunk``,
    ``without --uncentred`` (for ``centred=True``)."""
    flag = FLAGS[name]
    if name == "centred":
        return "without --uncentred" if value == "True" else "--uncentred"
    if value in ("True", "False"):
        if value == "True":
            return flag
        return "--no-" + flag[2:] if name in _OPTIONAL_BOOLS else f"without {flag}"
    if value == "None":
        return f"without {flag}"
    return f"{flag} {value.strip(chr(39) + chr(34))}"


def as_flags(message: str) -> str:
    """``message`` (a settings error) with each `TrainConfig` field written as its command-line flag.

    Rewritten: the leading word (or comma-separated words: "hidden, depth size the MLP only, ..."); a field with a
    value, ``name=value`` (``centred=True`` is "without --uncentred", ``shared_trunk=True`` "--shared-trunk"),
    ``name: value`` and ``name 'value'`` (``--hidden 256``, ``--backbone unet``); a field named as the subject of
    "sizes" (``preset sizes it``); and any other field name with an underscore (no English word has one)."""
    message = re.sub(_FIELD + "=" + _VALUE, lambda m: _setting(m.group(1), m.group(2)), message)
    message = re.sub(_FIELD + ": " + _VALUE, lambda m: _setting(m.group(1), m.group(2)), message)
    message = re.sub(_FIELD + " ('[^']*')", lambda m: _setting(m.group(1), m.group(2)), message)
    message = re.sub(_FIELD + r"(?= sizes\b)", lambda m: FLAGS[m.group(1)], message)
    message = re.sub(r"^\w+(?:, \w+)*", lambda m: ", ".join(FLAGS.get(w, w) for w in m.group(0).split(", ")),
                     message)
    return re.sub(r"(?<![-\w])([a-z]+_[a-z_]+)\b", lambda m: FLAGS.get(m.group(1), m.group(1)), message)
