"""What every benchmark here shares: waiting for a quiet machine, timing statistics,
paired runs in alternating order, and the results files.

The machine these run on is shared, so a timing taken while other processes use the
CPUs measures them as much as us: benches wait for quiet before each timed phase and
record how busy the machine was. Results are data: ``bench/results/<name>.json`` holds
every figure, ``<name>.md`` the same as tables. Conclusions are written by people, not
generated here, so that a re-run cannot leave a stale sentence next to new numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- machine load
def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs, from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICK


def own_cpu_s() -> float:
    """CPU seconds of this process and of its children that have exited."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OthersMeter:
    """The share of the machine's CPUs that other processes used during a span."""

    def start(self) -> OthersMeter:
        self.busy0, self.cpu0, self.t0 = machine_busy_s(), own_cpu_s(), time.perf_counter()
        return self

    def share(self) -> float:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        others = (machine_busy_s() - self.busy0) - (own_cpu_s() - self.cpu0)
        return max(others, 0.0) / (elapsed * (os.cpu_count() or 1))


def others_share(seconds: float) -> float:
    """Share of the machine's CPUs other processes use over the next ``seconds``."""
    meter = OthersMeter().start()
    time.sleep(seconds)
    return meter.share()


def wait_for_quiet(threshold: float, patience_s: float, sample_s: float = 1.0) -> dict[str, float]:
    """Wait (at most ``patience_s``) until other processes use at most ``threshold`` of
    the CPUs; returns the wait and the last share seen (``patience_s`` 0: one sample)."""
    start = time.perf_counter()
    share = others_share(sample_s)
    while share > threshold and time.perf_counter() - start < patience_s:
        share = others_share(sample_s)
    return {"waited_s": time.perf_counter() - start, "others_share": share}


def add_quiet_arguments(
    parser: argparse.ArgumentParser, threshold: float = 0.10, patience_s: float = 45.0
) -> None:
    parser.add_argument(
        "--max-others",
        type=float,
        default=threshold,
        help="quiet: other processes use at most this share of the CPUs (%(default)s)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=patience_s,
        help="seconds to wait for quiet before each timed phase (%(default)s)",
    )


# --------------------------------------------------------------------------- statistics
def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def gmean(values: Sequence[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def summary(seconds: Sequence[float], unit: str = "ms") -> dict[str, Any]:
    """n, median, p95 (interpolated), min and max of timings given in seconds."""
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]
    x = np.asarray(seconds, dtype=float) * scale
    return {
        "n": len(x),
        f"median_{unit}": float(np.median(x)),
        f"p95_{unit}": float(np.percentile(x, 95)),
        f"min_{unit}": float(x.min()),
        f"max_{unit}": float(x.max()),
    }


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """a[i] / b[i]: each pair ran back to back, so slow drift cancels within a pair."""
    return [x / y for x, y in zip(a, b, strict=True)]


def abba_order(arms: Sequence[str], k: int) -> list[str]:
    """The arms' order in the ``k``-th pair: two arms alternate (ABBA), more rotate, so
    that every arm takes every position equally often."""
    arms = list(arms)
    if len(arms) == 2:
        return arms if k % 2 == 0 else arms[::-1]
    k %= len(arms)
    return arms[k:] + arms[:k]


def order_balanced(pairs: Sequence[dict[str, Any]], arm: str, base: str, key: str) -> float | None:
    """arm/base, the pairs where ``arm`` ran first and those where it ran second averaged
    separately (geometric means), so that a slower second run of a pair cancels out."""
    groups: dict[bool, list[float]] = {True: [], False: []}
    for p in pairs:
        first = p["order"].index(arm) < p["order"].index(base)
        groups[first].append(p[arm][key] / p[base][key])
    if not groups[True] or not groups[False]:
        return None
    return gmean([gmean(groups[True]), gmean(groups[False])])


def position_effect(pairs: Sequence[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """How much slower the last run of a pair is than the first, whatever the arms."""
    ratios = [p[p["order"][-1]][key] / p[p["order"][0]][key] for p in pairs]
    if not ratios:
        return None
    return {
        "pairs": len(ratios),
        "last_over_first_gmean": gmean(ratios),
        "last_slower_in": sum(r > 1 for r in ratios),
    }


def run_pairs(
    arms: dict[str, Callable[[], dict[str, Any]]],
    *,
    wanted: int,
    max_others: float,
    quiet_wait: float,
    deadline: float | None = None,
    max_pairs: int | None = None,
    offset: int = 0,
    first_number: int = 1,
    label: str = "",
) -> list[dict[str, Any]]:
    """Adjacent runs of every arm (one "pair"), order per :func:`abba_order`, until
    ``wanted`` pairs are clean (others used at most ``max_others`` of the CPUs in every
    run of the pair), ``max_pairs`` ran, or the next pair would end after ``deadline``
    (a ``time.perf_counter()`` value).

    Each arm returns a dict of figures; the harness adds ``others_cpu_share`` to it.
    A pair records its order, the wait for quiet before it and whether it was clean.
    """
    pairs: list[dict[str, Any]] = []
    last_s = 0.0
    while sum(p["clean"] for p in pairs) < wanted:
        if max_pairs is not None and len(pairs) >= max_pairs:
            break
        if deadline is not None and time.perf_counter() + last_s > deadline:
            break
        quiet = wait_for_quiet(max_others, quiet_wait)
        order = abba_order(list(arms), len(pairs) + offset)
        t0 = time.perf_counter()
        pair: dict[str, Any] = {"order": order, "waited_s": quiet["waited_s"]}
        for arm in order:
            meter = OthersMeter().start()
            figures = arms[arm]()
            figures.setdefault("others_cpu_share", meter.share())
            pair[arm] = figures
        last_s = time.perf_counter() - t0
        pair["clean"] = all(pair[a]["others_cpu_share"] <= max_others for a in arms)
        pairs.append(pair)
        print(
            f"pair {first_number + len(pairs) - 1} {label} "
            + ", ".join(
                f"{a} {pair[a].get('seconds', float('nan')):.3f}s "
                f"(others {pair[a]['others_cpu_share']:.0%})"
                for a in order
            )
            + ("" if pair["clean"] else "  [not clean]")
            + (f"  (waited {quiet['waited_s']:.0f}s)" if quiet["waited_s"] >= 2 else ""),
            flush=True,
        )
    return pairs


def clean_or_all(pairs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The clean pairs, or every pair where none was clean (the count of clean pairs is
    reported next to the figures)."""
    return [p for p in pairs if p["clean"]] or list(pairs)


# --------------------------------------------------------------------------- Markdown
def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric_from: int = 1) -> list[str]:
    """A Markdown table; columns from ``numeric_from`` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.2f}%"


def num(x: float | None, fmt: str = ",.1f") -> str:
    return "–" if x is None else format(x, fmt)


def size(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} B" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def quiet_line(seen: dict[str, dict[str, float]]) -> str:
    """What :func:`wait_for_quiet` saw before each timed phase, as one line."""
    return "Others' share of the CPUs when each timed phase started: " + (
        ", ".join(
            f"{phase} {q['others_share']:.0%}"
            + (f" (after waiting {q['waited_s']:.0f} s)" if q["waited_s"] >= 2 else "")
            for phase, q in seen.items()
        )
        + "."
    )


# --------------------------------------------------------------------------- results
def add_results_arguments(parser: argparse.ArgumentParser, name: str, quick_help: str) -> None:
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        "--name", default=name, help="results file stem: <name>.json, <name>.md (%(default)s)"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help=f"where <name>.json and <name>.md go (default {RESULTS_DIR.relative_to(ROOT)}; "
        "with --quick nothing is written unless given)",
    )


def machine(**versions: str) -> dict[str, Any]:
    """The machine and the versions a figure depends on."""
    import chdb

    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "chdb": chdb.__version__,
        "numpy": np.__version__,
        **versions,
        "loadavg_at_start": list(os.getloadavg()),
    }


class Results:
    """One benchmark run's figures: ``data`` is written as ``<name>.json``, the tables
    given to :meth:`write` as ``<name>.md``, both in the results directory."""

    def __init__(self, args: argparse.Namespace, **versions: str) -> None:
        self.name = args.name
        quick = bool(getattr(args, "quick", False))
        given = getattr(args, "results_dir", None)
        self.directory: Path | None = given if given is not None or quick else RESULTS_DIR
        self.started = time.perf_counter()
        self.data: dict[str, Any] = {
            "bench": self.name,
            "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(["python", _script(), *sys.argv[1:]]),
            "parameters": {k: _plain(v) for k, v in vars(args).items() if not k.startswith("_")},
            "environment": machine(**versions),
        }

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def header(self, title: str) -> list[str]:
        """Title, when, the command, the machine and the parameters."""
        env = self.data["environment"]
        versions = {
            k: v
            for k, v in env.items()
            if k not in ("cpus", "memory_gb", "platform", "loadavg_at_start", "loadavg_at_end")
        }
        load = ", ".join(f"{x:.1f}" for x in env["loadavg_at_start"])
        if "loadavg_at_end" in env:
            load += " at the start; " + ", ".join(f"{x:.1f}" for x in env["loadavg_at_end"])
            load += " at the end"
        lines = [
            f"# {title}",
            "",
            f"Run {self.data['when']}: `{self.data['command']}`, "
            f"{self.data.get('total_seconds', 0):.0f} s. Machine: {env['cpus']} CPUs, "
            f"{env['memory_gb']} GiB, {env['platform']}, load average {load}. "
            + ", ".join(f"{k} {v}" for k, v in versions.items())
            + ".",
            "",
            "Parameters: "
            + ", ".join(f"`{k}={v}`" for k, v in self.data["parameters"].items() if v is not None)
            + ".",
            "",
        ]
        if self.data.get("quiet"):
            lines += [quiet_line(self.data["quiet"]), ""]
        return lines

    def write(self, body: Callable[[Results], list[str]]) -> str:
        """Close the run (load at the end, total time), write the files, print the
        Markdown; returns it."""
        self.data["environment"]["loadavg_at_end"] = list(os.getloadavg())
        self.data["total_seconds"] = time.perf_counter() - self.started
        markdown = "\n".join(body(self)) + "\n"
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            json_path = self.directory / f"{self.name}.json"
            json_path.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
            (self.directory / f"{self.name}.md").write_text(markdown)
            print(f"wrote {json_path} and {self.name}.md", flush=True)
        print(markdown)
        return markdown


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _script() -> str:
    script = Path(sys.argv[0]).resolve()
    return str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else str(script)
