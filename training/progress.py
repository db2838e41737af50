"""A training run's progress on stderr: tqdm's bar on a terminal, plain lines elsewhere.

A bar redraws itself with carriage returns; written to a log file or a pipe, every redraw stays (52 bar states in
the log of a 300-step run, on the lines of the warnings). Where stderr is not a terminal, `Progress` prints one
plain line at every tenth of the run instead, with the bar's latest figures (the loss, the speed).
"""

from __future__ import annotations

import sys

from tqdm import tqdm

__all__ = ["Progress"]


def _is_terminal(stream: object) -> bool:
    """Whether ``stream`` is an open terminal (a closed or replaced stream is not)."""
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


class Progress:
    """The progress of the steps ``initial … total`` of a run named ``desc``; nothing at all unless ``enabled``.

    On a terminal: a tqdm bar. Elsewhere: ``"desc: step k/total (p%), name value, ..."`` on stderr at every tenth
    of ``total`` and at the last step, with the figures of the last `set_postfix`, followed by ``"(at step j)"``
    where they were measured at an earlier step ``j`` (the trainers measure every 50 steps). `set_postfix` is
    called before the `update` that counts the step it measured.
    """

    def __init__(self, total: int, initial: int, enabled: bool, desc: str):
        self.plain = enabled and not _is_terminal(sys.stderr)
        self.bar = tqdm(total=total, initial=initial, disable=not enabled or self.plain, desc=desc,
                        dynamic_ncols=True)
        self.total, self.done, self.desc = total, initial, desc
        self.every = max(1, total // 10)
        self.figures: dict[str, object] = {}
        self.figures_step = initial

    def set_postfix(self, **figures: object) -> None:
        """The figures shown after the count (the bar's postfix; the plain line's tail)."""
        self.bar.set_postfix(**figures)
        self.figures, self.figures_step = figures, self.done + 1

    def update(self, n: int = 1) -> None:
        """``n`` more steps done."""
        self.bar.update(n)
        self.done += n
        if self.plain and (self.done % self.every == 0 or self.done == self.total):
            tail = "".join(f", {name} {value}" for name, value in self.figures.items())
            if tail and self.figures_step != self.done:
                tail += f" (at step {self.figures_step})"
            print(f"{self.desc}: step {self.done}/{self.total} ({self.done / max(self.total, 1):.0%}){tail}",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()
