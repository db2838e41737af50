"""The style guide's file size (README, "Style"): every Python file of the packages, the benchmarks and the tests
is at most `MAX_LINES` lines, so each stays one topic a reader can hold; a longer one is split by topic."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FOLDERS = ("learned_manifold", "training", "benchmarks", "tests")
"""The folders held to the limit (the tutorials are notebooks)."""

MAX_LINES = 450


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_every_python_file_is_at_most_450_lines():
    files = sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))
    assert len(files) > 100  # the folders were found: the check below is not vacuous
    over = {str(p.relative_to(ROOT)): _line_count(p) for p in files if _line_count(p) > MAX_LINES}
    assert not over, f"files over {MAX_LINES} lines (split them by topic): {over}"
