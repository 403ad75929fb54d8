"""Config errors say what is wrong: the field, the value, what is allowed, and for a
file the file and the line (issue 17, section 6). Through the CLI: the line ``suho``
prints (its entry point, ``main``) and the exception the CLI runner sees."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from suho.cli import app, main
from trainers.config_file import ConfigError, describe_config_error

runner = CliRunner()


@pytest.fixture
def suho(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run ``suho ARGS`` as the console script does; (exit code, printed error line)."""

    def run(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["suho", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        err = capsys.readouterr().err
        return int(exited.value.code or 0), " ".join(err.split())

    return run


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


SUPERVISED_MODELS = "supported: xgboost, lightgbm, catboost"
AGENTS = "'ppo', 'a2c', 'ddpg', 'sac' or 'td3'"
REWARDS = "'portfolio_value_change', 'log_return', 'differential_sharpe' or 'drawdown_penalized'"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("train", "supervised", "--model", "foo"), "model_type = 'foo': not a model we train"),
        (("train", "supervised", "--model", "sklearn"), "model_type = 'sklearn': not a model"),
        (("train", "rl", "--agent", "foo"), f"agent = 'foo': Input should be {AGENTS}"),
        (("train", "rl", "--reward", "foo"), f"reward = 'foo': Input should be {REWARDS}"),
    ],
)
def test_a_bad_option_names_the_field_the_value_and_what_is_allowed(suho, args, expected) -> None:
    code, err = suho(*args)
    assert code == 1
    assert expected in err
    assert "1 validation error" not in err
    if "--model" in args:
        assert SUPERVISED_MODELS in err
    result = runner.invoke(app, list(args))
    assert result.exit_code != 0 and expected in describe_config_error(result.exception)


@pytest.mark.parametrize("command", ["supervised", "rl"])
def test_an_unknown_key_in_a_yaml_file_names_file_line_and_the_known_keys(
    suho, tmp_path: Path, command: str
) -> None:
    path = write(tmp_path, "run.yaml", "seed: 3\n\nbogus_key: 1\ntuning:\n  trials: 1\n  nope: 2\n")
    code, err = suho("train", command, "--config", path)
    assert code == 1
    assert f"{path}:3: unknown setting 'bogus_key' (known: " in err
    assert f"{path}:6: unknown setting 'tuning.nope' (known: " in err
    assert "seed" in err.split("bogus_key")[1] and "trials" in err.split("tuning.nope")[1]


def test_a_value_of_the_wrong_type_in_a_file_names_file_line_field_and_value(
    suho, tmp_path: Path
) -> None:
    path = write(tmp_path, "run.yaml", "model_type: xgboost\nrounds: abc\n")
    code, err = suho("train", "supervised", "--config", path)
    assert code == 1
    assert f"{path}:2: rounds = 'abc': Input should be a valid integer" in err
    rl = write(tmp_path, "rl.yaml", "agent: ppo\ntimesteps: lots\nreward: nope\n")
    code, err = suho("train", "rl", "--config", rl)
    assert f"{rl}:2: timesteps = 'lots': Input should be a valid integer" in err
    assert f"{rl}:3: reward = 'nope': Input should be {REWARDS}" in err


def test_toml_files_name_the_line_too(suho, tmp_path: Path) -> None:
    path = write(tmp_path, "run.toml", 'rounds = 5\n\n[tuning]\ntrials = "x"\n')
    code, err = suho("train", "supervised", "--config", path)
    assert code == 1
    assert f"{path}:4: tuning.trials = 'x': Input should be a valid integer" in err
    broken = write(tmp_path, "broken.toml", "rounds = 5\nseed = \n")
    code, err = suho("train", "supervised", "--config", broken)
    assert code == 1 and f"{broken}:2:" in err and "malformed TOML" in err


def test_an_option_overriding_a_file_is_named_as_an_option(suho, tmp_path: Path) -> None:
    path = write(tmp_path, "run.yaml", "model_type: xgboost\nrounds: 5\n")
    code, err = suho("train", "supervised", "--config", path, "--model", "foo")
    assert code == 1
    assert "model_type = 'foo': not a model we train" in err and "(given as an option)" in err
    assert f"{path}:1" not in err


@pytest.mark.parametrize("command", ["supervised", "rl"])
def test_malformed_yaml_names_the_file_and_the_line(suho, tmp_path: Path, command: str) -> None:
    path = write(tmp_path, "run.yaml", "seed: 1\nsymbols: [EURUSD, XAUUSD\nrounds: 3\n")
    code, err = suho("train", command, "--config", path)
    assert code == 1
    assert f"{path}:3:7: malformed YAML:" in err
    assert "while parsing a flow sequence" in err
    assert not err.startswith("error: ParserError")
    result = runner.invoke(app, ["train", command, "--config", path])
    assert isinstance(result.exception, ConfigError)
    assert f"{path}:3:7" in str(result.exception)


def test_files_that_are_not_configs_say_so(suho, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.yaml")
    assert f"{missing} does not exist" in suho("train", "supervised", "--config", missing)[1]
    listed = write(tmp_path, "list.yaml", "- rounds\n- 3\n")
    assert "expected a mapping of settings" in suho("train", "rl", "--config", listed)[1]
    other = write(tmp_path, "run.json", "{}")
    assert "expected .toml, .yaml or .yml" in suho("train", "supervised", "--config", other)[1]


def test_a_whole_config_check_keeps_its_message(suho, tmp_path: Path) -> None:
    path = write(tmp_path, "run.yaml", "model_type: xgboost\nthreads: 2\nparams:\n  nthread: 1\n")
    code, err = suho("train", "supervised", "--config", path)
    assert code == 1
    assert f"{path}: threads=2 and params.nthread=1 disagree: give one of them" in err
