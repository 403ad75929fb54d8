"""Inference speed: ``suho predict`` against reading the rows and calling the
library by hand, and ``suho serve`` against ``mlflow models serve`` on the same model.

Phases run in their own processes (the embedded engine opens a data directory in
one process at a time):

1. ``prepare``: features (a small training table and ``--rows`` rows to predict),
   an XGBoost model trained and deployed, exported to a SQLite MLflow registry.
2. ``batch``: rows/s of ``run_batch`` (what ``suho predict`` runs: read, check,
   predict, write) to Parquet and to ``model_predictions``, against reading the same
   columns with ``FeatureTable.read`` and calling the booster by hand, in
   alternating order.
3. servers: ``python -m suho serve`` and ``mlflow models serve --env-manager local``
   on the same registered model; one client measures p50/p99 latency for 1 and 1,000
   rows (alternating servers), then requests/s of 1 row from 4 client threads.

    python bench/bench_predict.py            # --rows 1000000 for the issue's size
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

ROOT = harness.ROOT
MODEL = "bench-direction"


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUHO_")}
    env.update(
        SUHO_DATABASE_URL=f"clickhouse+chdb:///{work}/store",
        SUHO_DATA_DIR=str(work / "data"),
        PYTHONPATH=str(ROOT),
        MLFLOW_TRACKING_URI=f"sqlite:///{work}/mlflow.db",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return env


def _phase(work: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    out = work / f"{name}.json"
    command = [sys.executable, __file__, "--phase", name, "--work", str(work)]
    command += ["--rows", str(args.rows), "--reps", str(args.reps)]
    subprocess.run(command, check=True, env=_env(work), cwd=work)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# --------------------------------------------------------------------------- phases
def phase_prepare(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import datetime as dt

    from repositories.features import FeatureTable
    from repositories.tracking import RunKind, RunTrackingService
    from suho.integrations.mlflow import MlflowExporter
    from suho_models.db import Database, migrations
    from trainers.data.synth import generate_ml_features
    from trainers.supervised.config import SupervisedConfig
    from trainers.supervised.trainer import SupervisedTrainer

    url = os.environ["SUHO_DATABASE_URL"]
    migrations.upgrade(url)
    db = Database(url)
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    FeatureTable(db).write(generate_ml_features(("EURUSD", "XAUUSD"), periods=600, start=start))
    symbols = max(1, args.rows // 5000)
    big = generate_ml_features(
        tuple(f"S{i:03d}" for i in range(symbols)), periods=args.rows // symbols, start=start
    )
    FeatureTable(db, "bench_rows").write(big)
    config = {"model_type": "xgboost", "rounds": 100, "early_stopping": None, "progress": False}
    config |= {"cv_folds": 2, "selection": {"top_k": 20}, "model_name": MODEL}
    result = SupervisedTrainer(SupervisedConfig.model_validate(config), db).run()
    RunTrackingService(db, RunKind.SUPERVISED).deploy(result.checkpoint_id, "production")
    uri = os.environ["MLFLOW_TRACKING_URI"]
    MlflowExporter(db, uri, artifact_location=str(work / "artifacts")).export(result.run.run_id)
    sample = big.head(1000)[result.features]
    sample.to_parquet(work / "sample.parquet")
    db.close()
    return {
        "rows": len(big),
        "features": len(result.features),
        "checkpoint": str(result.checkpoint_id),
    }


def phase_batch(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from repositories.features import FeatureTable
    from suho.inference.batch import run_batch
    from suho.inference.models import SupervisedModel, load_model
    from suho_models.db import Database

    db = Database(os.environ["SUHO_DATABASE_URL"])
    model = load_model(MODEL, db=db)
    assert isinstance(model, SupervisedModel)

    def by_hand() -> int:
        frame = FeatureTable(db, "bench_rows").read(["time", "symbol", *model.features])
        X = frame[model.features].to_numpy(dtype=float)
        return len(model.booster.predict(model.model, X, model.task))

    def to_parquet() -> int:
        out = work / "out.parquet"
        return len(run_batch(db, model, "bench_rows", output=out).predictions)

    def to_table() -> int:
        return len(run_batch(db, model, "bench_rows").predictions)

    arms = {"by_hand": by_hand, "suho_predict_parquet": to_parquet, "suho_predict_table": to_table}
    times: dict[str, list[float]] = {k: [] for k in arms}
    cpu: dict[str, list[float]] = {k: [] for k in arms}
    rows = by_hand()  # warm up
    for rep in range(args.reps):
        order = list(arms) if rep % 2 == 0 else list(reversed(arms))
        for name in order:
            began, began_cpu = time.perf_counter(), time.process_time()
            assert arms[name]() == rows
            times[name].append(time.perf_counter() - began)
            cpu[name].append(time.process_time() - began_cpu)
    db.close()
    medians = {k: harness.median(v) for k, v in times.items()}
    cpu_medians = {k: harness.median(v) for k, v in cpu.items()}
    return {
        "rows": rows,
        "seconds": times,
        "cpu_seconds": cpu,
        "rows_per_s": {k: rows / v for k, v in medians.items()},
        "overhead_vs_hand": {k: medians[k] / medians["by_hand"] - 1 for k in medians},
        # CPU seconds of this process (all its threads, the engine's included): the
        # work each arm does, less disturbed than wall time by other load on the machine.
        "cpu_overhead_vs_hand": {
            k: cpu_medians[k] / cpu_medians["by_hand"] - 1 for k in cpu_medians
        },
    }


# --------------------------------------------------------------------------- servers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(
    url: str, proc: subprocess.Popen[bytes], timeout: float = 240, headers: Any = None
) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {url}")
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(url)


def servers(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    import pandas as pd

    env = _env(work)
    token = "bench-" + os.urandom(16).hex()  # suho serve wants one even on loopback
    auth = {"Authorization": f"Bearer {token}"}
    trees = {"suho_serve": ROOT}
    if args.baseline_tree is not None:  # the same server from another checkout, side by side
        trees["suho_serve_baseline"] = args.baseline_tree.resolve()
    ports = {name: _free_port() for name in [*trees, "mlflow_serve"]}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    copies: list[Path] = []
    for name, tree in trees.items():
        served = {**env, "SUHO_UI_TOKEN": token, "PYTHONPATH": str(tree)}
        if name != "suho_serve":  # an embedded store opens in one process: a copy each
            copy = Path(tempfile.mkdtemp(prefix=f"{name}-"))
            copies.append(copy)
            shutil.copytree(work, copy, symlinks=True, dirs_exist_ok=True)  # the engine: work
            served["SUHO_DATABASE_URL"] = f"clickhouse+chdb:///{copy}/store"
            served["SUHO_DATA_DIR"] = str(copy / "data")
        command = [sys.executable, "-m", "suho", "serve", "--model", MODEL]
        procs[name] = subprocess.Popen(
            [*command, "--port", str(ports[name])],
            env=served,
            cwd=work,
            stdout=subprocess.DEVNULL,
        )
    mlflow_cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m"]
    mlflow_cmd += [f"models:/suho-{MODEL}@production", "--env-manager", "local"]
    mlflow_cmd += ["-p", str(ports["mlflow_serve"]), "-h", "127.0.0.1"]
    procs["mlflow_serve"] = subprocess.Popen(
        mlflow_cmd, env=env, cwd=work, stdout=subprocess.DEVNULL
    )
    try:
        for name in trees:
            _wait(f"http://127.0.0.1:{ports[name]}/health", procs[name], headers=auth)
        _wait(f"http://127.0.0.1:{ports['mlflow_serve']}/ping", procs["mlflow_serve"])
        sample = pd.read_parquet(work / "sample.parquet")
        records = {n: sample.head(n).to_dict(orient="records") for n in (1, 1000)}
        targets = {name: (f"http://127.0.0.1:{ports[name]}/predict", "records") for name in trees}
        targets["mlflow_serve"] = (
            f"http://127.0.0.1:{ports['mlflow_serve']}/invocations",
            "dataframe_records",
        )
        headers = {name: auth if name in trees else {} for name in targets}
        # All answer the same numbers first.
        with httpx.Client(timeout=60) as client:
            b = client.post(
                targets["mlflow_serve"][0], json={"dataframe_records": records[1000]}
            ).json()
            probability = [p["probability"] for p in b["predictions"]]
            for name in trees:
                a = client.post(
                    targets[name][0], json={"records": records[1000]}, headers=auth
                ).json()
                assert np.array_equal(np.asarray(a["probability"]), np.asarray(probability))
        latency: dict[str, dict[str, Any]] = {}
        with httpx.Client(timeout=60) as client:
            for n in (1, 1000):
                reps = args.requests if n == 1 else max(20, args.requests // 10)
                samples: dict[str, list[float]] = {k: [] for k in targets}
                for i in range(reps):
                    order = list(targets)[i % len(targets) :] + list(targets)[: i % len(targets)]
                    for name in order:
                        url, key = targets[name]
                        began = time.perf_counter()
                        response = client.post(url, json={key: records[n]}, headers=headers[name])
                        samples[name].append(time.perf_counter() - began)
                        response.raise_for_status()
                for name, values in samples.items():
                    ms = np.asarray(values) * 1000
                    latency.setdefault(name, {})[f"{n}_rows"] = {
                        "p50_ms": float(np.percentile(ms, 50)),
                        "p99_ms": float(np.percentile(ms, 99)),
                        "requests": len(ms),
                    }
        windows_rates: dict[str, list[float]] = {}
        # Each server's window in turn, twice in opposite order: load that comes and
        # goes meets both; the figure is the mean of the two windows.
        windows = [*targets, *reversed(targets)]
        for name in windows:
            url, key = targets[name]
            stop = time.perf_counter() + args.seconds
            counts = [0] * 4

            def client_loop(
                i: int,
                url: str = url,
                key: str = key,
                stop: float = stop,
                counts: list[int] = counts,
                sent: dict[str, str] = headers[name],
            ) -> None:
                with httpx.Client(timeout=60, headers=sent) as c:
                    while time.perf_counter() < stop:
                        c.post(url, json={key: records[1]}).raise_for_status()
                        counts[i] += 1

            threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(4)]
            began = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            windows_rates.setdefault(name, []).append(sum(counts) / (time.perf_counter() - began))
        throughput = {k: sum(v) / len(v) for k, v in windows_rates.items()}
        return {
            "latency": latency,
            "requests_per_s_1_row_4_clients": throughput,
            "requests_per_s_windows": windows_rates,
        }
    finally:
        for proc in procs.values():
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for copy in copies:
            shutil.rmtree(copy, ignore_errors=True)


# --------------------------------------------------------------------------- report
def markdown(r: harness.Results) -> list[str]:
    lines = r.header("Inference: suho predict and suho serve")
    batch = r["batch"]
    lines += ["## Batch", "", f"{batch['rows']:,} feature rows, median of the repetitions."]
    earlier = r.data.get("batch_from")
    if earlier:  # --online-only: the batch figures of the run before, said so
        load = ", ".join(f"{x:.1f}" for x in earlier["loadavg_at_start"])
        lines += [
            f"Not measured in this run: from the run of {earlier['when']} "
            f"(`{earlier['command']}`, load average {load} at its start)."
        ]
    lines += [""]
    cpu_overhead = batch.get("cpu_overhead_vs_hand", {})
    lines += harness.table(
        ["arm", "rows/s", "overhead vs by hand", "CPU-time overhead vs by hand"],
        [
            (
                k,
                harness.num(v, ",.0f"),
                harness.pct(batch["overhead_vs_hand"][k]),
                harness.pct(cpu_overhead[k]) if k in cpu_overhead else "-",
            )
            for k, v in batch["rows_per_s"].items()
        ],
    )
    online = r.data.get("online")
    if online:
        lines += ["", "## Online", ""]
        rows = []
        for name, by_size in online["latency"].items():
            for size_, s in by_size.items():
                rows.append(
                    (name, size_, harness.num(s["p50_ms"], ".2f"), harness.num(s["p99_ms"], ".2f"))
                )
        lines += harness.table(["server", "rows", "p50 ms", "p99 ms"], rows, numeric_from=2)
        lines += ["", "Requests/s, 1 row, 4 client threads (mean of each server's windows):", ""]
        windows = online.get("requests_per_s_windows", {})
        lines += harness.table(
            ["server", "requests/s", "windows"],
            [
                (k, harness.num(v, ",.0f"), ", ".join(f"{w:,.0f}" for w in windows.get(k, [])))
                for k, v in online["requests_per_s_1_row_4_clients"].items()
            ],
        )
    return lines


def _keep_batch(results: harness.Results) -> None:
    """The batch figures of the results file already there, and which run made them."""
    if results.directory is None:
        raise SystemExit("--online-only keeps an earlier run's batch figures: give --results-dir")
    earlier = json.loads((results.directory / f"{results.name}.json").read_text())
    results["batch"] = earlier["batch"]
    env = earlier["environment"]
    results["batch_from"] = earlier.get("batch_from") or {
        "when": earlier["when"],
        "command": earlier["command"],
        "loadavg_at_start": env["loadavg_at_start"],
        "loadavg_at_end": env.get("loadavg_at_end"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="Feature rows to predict.")
    parser.add_argument("--reps", type=int, default=3, help="Batch repetitions per arm.")
    parser.add_argument("--requests", type=int, default=200, help="Latency requests of 1 row.")
    parser.add_argument("--seconds", type=float, default=5.0, help="Throughput window per server.")
    parser.add_argument(
        "--online-only",
        action="store_true",
        help="Only the servers (on 20,000 prepared rows); the batch figures of the results "
        "file already there are kept, with the run they came from.",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="Also serve with the suho code of this checkout (e.g. a git worktree of the "
        "commit before a change): before and after in one run.",
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    harness.add_results_arguments(parser, "predict", "Small sizes; nothing written.")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.reps, args.requests, args.seconds = 20_000, 1, 30, 1.0
    if args.online_only:
        args.rows = 20_000  # the servers answer from a 1,000-row sample
    if args.phase:
        phases = {"prepare": phase_prepare, "batch": phase_batch}
        data = phases[args.phase](args.work, args)
        (args.work / f"{args.phase}.json").write_text(json.dumps(data))
        return 0
    import mlflow
    import xgboost

    results = harness.Results(args, xgboost=xgboost.__version__, mlflow=mlflow.__version__)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results["prepare"] = _phase(work, "prepare", args)
        if args.online_only:
            _keep_batch(results)
        else:
            results["batch"] = _phase(work, "batch", args)
        try:
            results["online"] = servers(work, args)
        except Exception as exc:  # noqa: BLE001 - the batch figures stand on their own
            results["online_error"] = repr(exc)
    results.write(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
