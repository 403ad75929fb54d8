"""Issue 28 §4: how the CLI ends, and what it leaves on disk.

* A training stopped by SIGTERM exits 143, by Ctrl-C (SIGINT) 130, each with one
  line and the run marked cancelled first; a command's own ``typer.Exit`` code
  reaches the shell (typer hands it back as a return value, which was dropped).
* ``suho checkpoints export`` never writes through a symbolic link nor over an
  existing file without ``--force``, and leaves no partial file.
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from repositories.checkpoints import ModelCheckpointRepository
from repositories.features import FeatureTable
from repositories.runs import TrainingRunRepository
from suho_models.db import Database, migrations
from tests.conftest import fresh_database_name

ROOT = Path(__file__).resolve().parents[1]


def _env(url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUHO_")}
    env.update(
        SUHO_DATABASE_URL=url,
        SUHO_DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=str(ROOT),
    )
    return env


def _suho(*args: str) -> list[str]:
    return [sys.executable, "-c", "from suho.cli import main; main()", *args]


# --------------------------------------------------------------------------- signals
@pytest.fixture
def server_store(local_server: object) -> tuple[str, Database]:
    """A store on the local server: the parent watches the run while the child trains
    (an embedded store is locked to the process that opened it)."""
    from trainers.data.synth import generate_ml_features

    url = local_server.native_url(fresh_database_name())  # type: ignore[attr-defined]
    migrations.upgrade(url)
    db = Database(url)
    start = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    FeatureTable(db).write(generate_ml_features(("EURUSD",), periods=3000, start=start))
    return url, db


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "line"),
    [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted (Ctrl-C)")],
)
def test_a_stopped_training_exits_with_the_signal_code_and_one_line(
    server_store: tuple[str, Database], tmp_path: Path, signum: int, code: int, line: str
) -> None:
    url, db = server_store
    config = tmp_path / "no-early-stop.yaml"  # it must still be training when signalled
    config.write_text("early_stopping: null\n")
    args = ["train", "supervised", "--model", "xgboost", "--rounds", "100000", "--quiet"]
    args += ["--config", str(config)]
    child = subprocess.Popen(
        _suho(*args), env=_env(url, tmp_path), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        runs = TrainingRunRepository(db)
        while time.monotonic() < deadline and child.poll() is None:
            found = runs.list()
            if found and found[0].train_rows is not None:
                break  # its data split recorded: inside the run's guard, cross-validating
            time.sleep(0.5)
        assert child.poll() is None, child.communicate()
        child.send_signal(signum)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == code, (out, err)
    lines = [x for x in err.splitlines() if x.strip()]
    assert lines[-1] == line and err.count(line) == 1, err
    assert "Traceback" not in err, err
    (run,) = TrainingRunRepository(db).list()
    assert run.status.value == "cancelled" and run.error_message, run


def test_a_commands_exit_code_reaches_the_shell(tmp_path: Path) -> None:
    """``typer.Exit(1)`` from a command (``checkpoints sign`` that refused a row)
    must not exit 0."""
    url = f"clickhouse+chdb:///{tmp_path}/store/{fresh_database_name()}"
    migrations.upgrade(url)
    with Database(url) as db:
        run = TrainingRunRepository(db).create(
            {"run_name": "r", "model_type": "xgboost", "target_variable": "t"}
        )
        data = pickle.dumps("planted")
        _insert_unsigned(db, run.run_id, data)
    done = subprocess.run(
        _suho("checkpoints", "sign", "--all", "--yes"),
        env=_env(url, tmp_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "REFUSED" in done.stdout and "refused 1 checkpoint(s)" in done.stderr
    assert "signed 0 checkpoint(s)" in done.stdout


def _insert_unsigned(db: Database, run_id: uuid.UUID, data: bytes) -> uuid.UUID:
    from tests.test_checkpoint_security import insert_pre_signature_row

    now = dt.datetime.now(dt.UTC)
    return insert_pre_signature_row(
        db, "model_checkpoints", run_id, "pickle", data,
        model_name="m", model_type="xgboost", created_at=now, updated_at=now,
    )  # fmt: skip


# --------------------------------------------------------------------------- export
@pytest.fixture
def exported(db: Database, url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, bytes]:
    from suho_models.settings import get_settings

    run = TrainingRunRepository(db).create(
        {"run_name": "r", "model_type": "xgboost", "target_variable": "t"}
    )
    data = b"model bytes " * 100
    info = ModelCheckpointRepository(db).save_checkpoint(run.run_id, data, "raw", model_name="m")
    monkeypatch.setenv("SUHO_DATABASE_URL", url)
    get_settings.cache_clear()
    return str(info.checkpoint_id), data


def _export(checkpoint_id: str, path: Path, *extra: str) -> object:
    from typer.testing import CliRunner

    from suho.cli import app

    return CliRunner().invoke(app, ["checkpoints", "export", checkpoint_id, str(path), *extra])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("backend", ["embedded"])
@pytest.mark.parametrize("kind", ["file", "link_to_file", "dangling_link", "link_to_folder"])
def test_export_refuses_an_existing_destination_or_link(
    exported: tuple[str, bytes], tmp_path: Path, kind: str
) -> None:
    checkpoint_id, data = exported
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    dest = tmp_path / "out.bin"
    if kind == "file":
        dest.write_text("old export")
    elif kind == "link_to_file":
        dest.symlink_to(target)
    elif kind == "dangling_link":
        dest.symlink_to(tmp_path / "nothing-here")
    else:
        (tmp_path / "folder").mkdir()
        dest.symlink_to(tmp_path / "folder")
    before = os.readlink(dest) if dest.is_symlink() else dest.read_text()

    refused = _export(checkpoint_id, dest)
    assert refused.exit_code != 0  # type: ignore[attr-defined]
    assert "--force" in str(refused.exception) or "--force" in refused.output  # type: ignore[attr-defined]
    assert target.read_text() == "keep me"
    assert (os.readlink(dest) if dest.is_symlink() else dest.read_text()) == before
    assert not (tmp_path / "nothing-here").exists()
    assert _leftovers(tmp_path) == []

    forced = _export(checkpoint_id, dest, "--force")
    assert forced.exit_code == 0, forced.output  # type: ignore[attr-defined]
    assert not dest.is_symlink() and dest.read_bytes() == data  # the link itself replaced
    assert target.read_text() == "keep me" and not (tmp_path / "nothing-here").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("backend", ["embedded"])
def test_export_writes_a_new_file_whole(exported: tuple[str, bytes], tmp_path: Path) -> None:
    checkpoint_id, data = exported
    dest = tmp_path / "new.bin"
    result = _export(checkpoint_id, dest)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert dest.read_bytes() == data and _leftovers(tmp_path) == []
    folder = _export(checkpoint_id, tmp_path, "--force")
    assert folder.exit_code != 0 and tmp_path.is_dir()  # type: ignore[attr-defined]
