"""`driftloop models ...` and `driftloop retrain episodes/triggers` as a user meets them, and the drift monitor's
reference taken from the champion."""

from __future__ import annotations

import json
import os

import pytest
from events import run_cli
from models import register

from driftloop.drift import ReferenceProfile
from driftloop.drift_service import reference_dir
from driftloop.layout import profile_dir
from driftloop.retrain_service import RetrainService, open_registry
from driftloop.settings import load_settings


@pytest.fixture
def env(tmp_path) -> dict:
    return {**os.environ, "DRIFTLOOP_DATA_DIR": str(tmp_path / "data"), "DRIFTLOOP_STACK__STATE_DIR": str(tmp_path / "s")}


def cli_json(*args, env):
    done = run_cli(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_models_list_show_promote_history_and_rollback(env, tmp_path):
    settings = load_settings(data_dir=tmp_path / "data")
    registry = open_registry(settings)
    for seed in (1, 2):
        register(registry, tmp_path, seed)
    registry.move_alias("churn", "champion", 1, expected=None, reason="first champion")
    registry.move_alias("churn", "challenger", 2, expected=None, reason="episode ep-1")

    listed = cli_json("models", "list", env=env)
    assert [(row["version"], row["aliases"]) for row in listed] == [(1, ["champion"]), (2, ["challenger"])]
    shown = cli_json("models", "show", "-m", "churn", "--version", "challenger", env=env)
    assert (shown["version"], shown["snapshot_id"], shown["aliases"]) == (2, "snap-2", ["challenger"])
    assert shown["artifact_sha256"] in shown["artifact_path"]

    moves = cli_json("models", "promote", "-m", "churn", "--reason", "looked better on Monday", env=env)
    assert {m["alias"]: m["to_version"] for m in moves} == {"champion": 2, "previous": 1, "challenger": None}
    assert registry.aliases("churn") == {"champion": 2, "previous": 1}
    back = cli_json("models", "rollback", "-m", "churn", "--reason", "complaints", env=env)
    assert (back[0]["from_version"], back[0]["to_version"]) == (2, 1)
    history = cli_json("models", "history", "-m", "churn", env=env)
    assert [(h["alias"], h["to_version"]) for h in history][-3:] == [("challenger", None), ("champion", 1),
                                                                     ("previous", None)]
    assert history[2]["reason"] == "looked better on Monday" and history[2]["actor"].startswith("cli")

    stale = run_cli("models", "promote", "-m", "churn", "--version", "2", "--expected", "2", "--reason", "x", env=env)
    assert stale.returncode == 1 and "points at version 1, not version 2" in stale.stderr
    assert "Traceback" not in stale.stderr and len(stale.stderr.strip().splitlines()) == 1
    missing = run_cli("models", "show", "-m", "churn", "--version", "9", env=env)
    assert missing.returncode == 1 and "versions: [1, 2]" in missing.stderr


def test_retrain_episodes_and_triggers_list_what_happened(env, tmp_path):
    service = RetrainService(load_settings(data_dir=tmp_path / "data"))
    decision, episode = service.trigger("churn", "manual")
    assert decision == "started"
    assert service.trigger("churn", "manual")[0] == "skipped_busy"
    episodes = cli_json("retrain", "episodes", env=env)
    assert [(e["id"], e["step"], e["outcome"]) for e in episodes] == [(episode.id, "snapshotting", None)]
    triggers = cli_json("retrain", "triggers", "-m", "churn", env=env)
    assert [t["decision"] for t in triggers] == ["skipped_busy", "started"]
    for group in ("models", "retrain"):
        done = run_cli(group, "--help", env=env)
        assert done.returncode == 0 and "Usage: driftloop" in done.stdout


def test_the_drift_monitor_takes_its_reference_from_the_champion(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data")
    assert reference_dir(settings, "churn") == profile_dir(settings, "churn"), "no registry yet: the profiled one"
    registry = open_registry(settings)
    version, _, _ = register(registry, tmp_path, 1)
    assert reference_dir(settings, "churn") == profile_dir(settings, "churn"), "no champion yet"
    registry.move_alias("churn", "champion", version.version, expected=None, reason="first")
    champion_profile = reference_dir(settings, "churn")
    assert champion_profile == registry.artifact(version) / "profile"
    assert ReferenceProfile.load(champion_profile).rows == 50
