"""The `driftloop` command as a user meets it: one clear line on stderr and an exit code by kind of fault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import get_args

import pytest
from events import run_cli

from driftloop.cli import EXIT_CONFIG, EXIT_RUNTIME, EXIT_USAGE
from driftloop.cli.curate import ExportFormat
from driftloop.curation import EXPORT_FORMATS, STRATEGIES
from driftloop.drift.estimation import CALIBRATIONS
from driftloop.drift.sequential import DETECTORS
from driftloop.drift.window import METHODS
from driftloop.settings import CalibrationName, DetectorName, DriftMethod, StrategyName


@pytest.fixture
def env(tmp_path) -> dict:
    """A user's environment with a data dir of its own, deep enough that a wrapped line would show."""
    data = tmp_path / ("a-long-folder-name-" * 6) / "data"
    return {**os.environ, "DRIFTLOOP_DATA_DIR": str(data), "DRIFTLOOP_STACK__STATE_DIR": str(tmp_path / "stack")}


def one_error_line(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    return lines[0]


def test_version_and_help_on_every_group(env):
    version = run_cli("--version", env=env)
    assert version.returncode == 0 and version.stdout.startswith("driftloop 0.")
    for group in ("stack", "collector", "api", "store", "drift", "curate"):
        done = run_cli(group, "--help", env=env)
        assert done.returncode == 0 and "Usage: driftloop" in done.stdout, group


def test_an_unknown_model_is_an_error_not_a_silent_success(env):
    for command in (["curate", "select", "-m", "typo"], ["drift", "reports", "-m", "typo"]):
        done = run_cli(*command, env=env)
        assert done.returncode == EXIT_RUNTIME, command
        line = one_error_line(done)
        assert "'typo'" in line and env["DRIFTLOOP_DATA_DIR"] in line, "names the model and the whole path, unwrapped"


def test_configuration_faults_exit_3_naming_the_setting(env, tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[drift]\nmethod = \n")
    cases = {
        "malformed TOML": (["config", "--config", str(broken)], {}, "not valid TOML"),
        "missing file": (["config", "--config", str(tmp_path / "absent.toml")], {}, "does not exist"),
        "unknown choice": (["config"], {"DRIFTLOOP_DRIFT__METHOD": "kolmogorov"}, "DRIFTLOOP_DRIFT__METHOD"),
        "bad strategy": (["config"], {"DRIFTLOOP_CURATION__STRATEGY": "most_uncertain"}, "curation.strategy"),
    }
    for name, (args, extra, expected) in cases.items():
        done = run_cli(*args, env={**env, **extra})
        assert done.returncode == EXIT_CONFIG, name
        assert expected in one_error_line(done), name


def test_usage_errors_exit_2_and_list_the_choices(env):
    done = run_cli("curate", "select", "-m", "churn", "--strategy", "most_uncertain", env=env)
    assert done.returncode == EXIT_USAGE
    assert "margin" in done.stderr and "drift_targeted" in done.stderr, "the valid strategies are listed"


def test_runtime_faults_are_one_line_and_debug_shows_the_traceback(env, tmp_path):
    empty = run_cli("store", "query", env=env)
    assert empty.returncode == EXIT_RUNTIME and "empty" in one_error_line(empty)
    missing = run_cli("curate", "export", "no-such-batch", "--out", str(tmp_path / "x.json"), env=env)
    assert missing.returncode == EXIT_RUNTIME and "no-such-batch" in one_error_line(missing)
    debug = run_cli("--debug", "curate", "export", "no-such-batch", "--out", str(tmp_path / "x.json"), env=env)
    assert debug.returncode == EXIT_RUNTIME and "Traceback" in debug.stderr


def test_json_output_is_json(env):
    batches = run_cli("curate", "batches", "--json", env=env)
    assert batches.returncode == 0 and json.loads(batches.stdout) == []
    status = run_cli("stack", "status", "--json", env=env)  # nothing runs under this state dir
    assert status.returncode == EXIT_RUNTIME
    assert {row["name"] for row in json.loads(status.stdout)} == {"kafka", "prometheus", "alertmanager", "label-studio"}
    assert all(row["answers"] is False for row in json.loads(status.stdout))


def test_the_api_key_is_a_secret_that_config_masks(env):
    key = "k" * 24
    done = run_cli("config", env={**env, "DRIFTLOOP_API__API_KEY": key})
    assert done.returncode == 0 and key not in done.stdout and "**********" in done.stdout


def test_one_label_horizon_serves_every_reader(env):
    shown = json.loads(run_cli("config", env={**env, "DRIFTLOOP_LABEL_HORIZON_HOURS": "12"}).stdout)
    assert shown["label_horizon_hours"] == 12
    assert "label_horizon_hours" not in shown["drift"] and "label_horizon_hours" not in shown["curation"]


def test_the_settings_choices_are_the_registries():
    assert set(get_args(DriftMethod)) == set(METHODS)
    assert set(get_args(DetectorName)) == set(DETECTORS)
    assert set(get_args(StrategyName)) == set(STRATEGIES)
    assert set(get_args(ExportFormat)) == set(EXPORT_FORMATS)
    assert set(get_args(CalibrationName)) == set(CALIBRATIONS)


def test_listing_batches_does_not_import_scikit_learn(env):
    done = run_cli("curate", "batches", "--json", env=env)  # warm-up: the command works
    assert done.returncode == 0
    probe = (
        "import sys\n"
        "from driftloop.cli import app\n"
        "try:\n    app(['curate', 'batches', '--json'], standalone_mode=False)\n"
        "finally:\n    print('sklearn' in sys.modules, file=sys.stderr)\n"
    )
    ran = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert ran.stderr.strip().splitlines()[-1] == "False", ran.stderr


def test_the_api_refuses_to_listen_beyond_loopback_without_a_key(env):
    done = run_cli("api", "run", env={**env, "DRIFTLOOP_API__HOST": "0.0.0.0", "DRIFTLOOP_STACK__START_PROMETHEUS": "false"})
    assert done.returncode == EXIT_RUNTIME
    line = one_error_line(done)
    assert "without an API key" in line and "--insecure" in line
