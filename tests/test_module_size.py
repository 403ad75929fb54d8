"""Every module of the project reads in one sitting: at most 600 lines.

The shipped migration revisions are frozen and left out. The modules listed in
``NOT_YET_SPLIT`` are over the limit today and are being reworked by other
changes; the list may only shrink (a listed module that fits fails the test, so
it comes off the list).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("suho", "suho_models", "repositories", "trainers")
LIMIT = 600

NOT_YET_SPLIT: set[str] = set()  # empty: every module fits


def line_counts() -> dict[str, int]:
    counts = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/versions/" not in relative:
                counts[relative] = len(path.read_text().splitlines())
    return counts


def test_no_module_is_over_600_lines() -> None:
    counts = line_counts()
    assert "repositories/tracking.py" in counts  # the walk found the project
    over = {path for path, n in counts.items() if n > LIMIT}
    assert over - NOT_YET_SPLIT == set(), {p: counts[p] for p in over - NOT_YET_SPLIT}


def test_modules_listed_as_not_yet_split_still_are() -> None:
    counts = line_counts()
    assert {p for p in NOT_YET_SPLIT if counts.get(p, 0) <= LIMIT} == set()
