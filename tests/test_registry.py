"""The model registry: versions, compare-and-swap alias moves, an append-only history, verified artifacts."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from models import FEATURES, register

from driftloop.retrain import (
    MIGRATIONS,
    ArtifactError,
    Database,
    Leases,
    ModelRegistry,
    Preprocessor,
    SchemaTooNew,
    StaleAlias,
    UnknownVersion,
)
from driftloop.retrain.registry import AliasMove


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry.open(tmp_path / "registry")


def test_a_registered_version_reloads_bit_identically_and_scores_the_same(registry, tmp_path):
    version, module, data = register(registry, tmp_path, seed=1, alias="challenger", reason="trained by hand")
    assert (version.version, version.snapshot_id, version.features) == (1, "snap-1", tuple(FEATURES[:4]))
    loaded = registry.load("churn", "challenger")
    assert loaded.version == version
    for name, tensor in module.state_dict().items():
        assert torch.equal(loaded.predictor.module.state_dict()[name], tensor), name
    expected = torch.softmax(module(torch.as_tensor(Preprocessor.fit(data).transform(data))), 1).detach().numpy()
    assert np.array_equal(loaded.predictor.predict_proba(data), expected.astype(np.float64))
    assert list(loaded.predictor.classes_) == ["0", "1"]
    assert (loaded.profile_dir / "profile.json").is_file()


@pytest.mark.parametrize("damage", ["tampered weights", "truncated weights", "edited manifest", "extra file",
                                    "deleted preprocessing"])
def test_a_damaged_artifact_is_refused_and_never_loaded(registry, tmp_path, damage):
    version, _, _ = register(registry, tmp_path, seed=2, alias="champion", reason="first")
    folder = registry.artifacts.path(version.artifact_sha256)
    weights = folder / "weights.pt"
    if damage == "tampered weights":
        raw = bytearray(weights.read_bytes())
        raw[-20] ^= 0xFF
        weights.write_bytes(bytes(raw))
    elif damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "edited manifest":
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["files"]["weights.pt"]["bytes"] += 1
        (folder / "manifest.json").write_text(json.dumps(manifest))
    elif damage == "extra file":
        (folder / "payload.pkl").write_bytes(b"\x80\x04")
    else:
        (folder / "preprocessing.json").unlink()
    with pytest.raises(ArtifactError, match=r"churn version 1: artifact .*not loading it|was changed"):
        registry.load("churn", "champion")
    with pytest.raises(ArtifactError):
        registry.profile_dir("churn")


def test_a_stale_compare_and_swap_is_refused_and_moves_nothing(registry, tmp_path):
    for seed in (1, 2, 3):
        register(registry, tmp_path, seed)
    registry.move_alias("churn", "champion", 1, expected=None, reason="first champion", actor="test")
    with pytest.raises(StaleAlias, match="points at version 1, not nothing"):
        registry.move_alias("churn", "champion", 2, expected=None, reason="stale")
    with pytest.raises(StaleAlias):  # a multi-alias move is all or nothing
        registry.move_aliases("churn", [AliasMove("challenger", 3, None), AliasMove("champion", 2, 3)], reason="x")
    assert registry.aliases("churn") == {"champion": 1}
    assert [(c.alias, c.from_version, c.to_version) for c in registry.history("churn")] == [("champion", None, 1)]
    with pytest.raises(UnknownVersion, match="versions: \\[1, 2, 3\\]"):
        registry.move_alias("churn", "champion", 9, expected=1, reason="no such version")
    with pytest.raises(ValueError, match="Valid values are"):
        registry.move_alias("churn", "winner", 2, expected=None, reason="bad alias")
    with pytest.raises(ValueError, match="needs a reason"):
        registry.move_alias("churn", "champion", 2, expected=1, reason=" ")


def test_promote_and_rollback_are_alias_moves_with_their_evidence(registry, tmp_path):
    for seed in (1, 2):
        register(registry, tmp_path, seed)
    registry.move_alias("churn", "champion", 1, expected=None, reason="first champion")
    registry.move_alias("churn", "challenger", 2, expected=None, reason="episode ep-1")
    evidence = {"pairs": 400, "statistic": 3.2}
    moves = registry.promote("churn", expected_champion=1, expected_challenger=2, reason="gate passed",
                             evidence=evidence, actor="gate")
    assert {m.alias: (m.from_version, m.to_version) for m in moves} == {
        "champion": (1, 2), "challenger": (2, None), "previous": (None, 1)}
    assert registry.aliases("churn") == {"champion": 2, "previous": 1}
    with pytest.raises(StaleAlias):
        registry.promote("churn", expected_champion=1, expected_challenger=2, reason="again")

    back = registry.rollback("churn", reason="accuracy fell in the watch window", evidence={"accuracy": 0.61},
                             actor="watch")
    assert (back.from_version, back.to_version) == (2, 1)
    assert registry.aliases("churn") == {"champion": 1}
    history = registry.history("churn")
    assert [(c.alias, c.from_version, c.to_version) for c in history] == [
        ("champion", None, 1), ("challenger", None, 2), ("champion", 1, 2), ("challenger", 2, None),
        ("previous", None, 1), ("champion", 2, 1), ("previous", 1, None)]
    assert history[2].evidence == evidence and history[2].actor == "gate" and history[2].reason == "gate passed"
    assert history[5].evidence["accuracy"] == 0.61 and history[5].evidence["undoes_history_id"] == history[2].id
    assert registry.last_change_id("churn") == history[-1].id


def test_the_alias_history_is_append_only(registry, tmp_path):
    register(registry, tmp_path, 1)
    registry.move_alias("churn", "champion", 1, expected=None, reason="first")
    db = registry.database.connection()
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE alias_history SET reason = 'rewritten'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM alias_history")
    assert registry.history("churn")[0].reason == "first"


def test_registering_twice_for_one_episode_keeps_one_version(registry, tmp_path):
    first, _, _ = register(registry, tmp_path, 1, episode_id="ep-1", origin="episode", alias="challenger",
                           reason="episode ep-1")
    again, _, _ = register(registry, tmp_path, 2, episode_id="ep-1", origin="episode", alias="challenger",
                           reason="episode ep-1")
    assert again == first
    assert [v.version for v in registry.versions("churn")] == [1]
    assert len(registry.history("churn")) == 1
    assert registry.by_episode("ep-1") == first


def test_two_processes_moving_aliases_at_once_keep_a_chain_of_history(registry, tmp_path):
    versions = [register(registry, tmp_path, seed)[0].version for seed in range(1, 5)]
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from driftloop.retrain import ModelRegistry, StaleAlias
        registry = ModelRegistry.open(Path({str(tmp_path / "registry")!r}))
        mine, start = [int(v) for v in sys.argv[1].split(",")], float(sys.argv[2])
        while time.time() < start:
            pass
        stale = 0
        for round in range(15):
            for version in mine:
                while True:
                    current = registry.alias("churn", "champion")
                    try:
                        registry.move_alias("churn", "champion", version, expected=current, reason=f"round {{round}}",
                                            actor=sys.argv[1])
                        break
                    except StaleAlias:
                        stale += 1
        print(stale)
    """)
    import time

    start = str(time.time() + 3)
    processes = [subprocess.Popen([sys.executable, "-c", script, ",".join(map(str, mine)), start],
                                  stdout=subprocess.PIPE, text=True)
                 for mine in (versions[:2], versions[2:])]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    history = registry.history("churn", "champion")
    assert len(history) == 2 * 15 * 2, "every move of both processes is in the history"
    assert history[0].from_version is None
    for before, after in zip(history, history[1:], strict=False):
        assert after.from_version == before.to_version, "each move starts where the one before it ended"
        assert after.id > before.id
    assert registry.alias("churn", "champion") == history[-1].to_version
    assert {c.actor for c in history} == {"1,2", "3,4"}


def test_a_newer_schema_is_refused_and_migrations_run_once(tmp_path):
    path = tmp_path / "registry.db"
    Database(path)
    Database(path)  # opening again applies nothing
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    connection.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    connection.commit()
    connection.close()
    with pytest.raises(SchemaTooNew, match="upgrade driftloop"):
        Database(path)


def test_a_lease_has_one_holder_until_it_expires(tmp_path):
    now = [1000.0]
    leases = Leases(Database(tmp_path / "registry.db"), clock=lambda: now[0])
    assert leases.acquire("retrain:churn", "service-a", ttl_s=30) is not None
    assert leases.acquire("retrain:churn", "service-b", ttl_s=30) is None, "held by a live service"
    now[0] += 20
    leases.renew("retrain:churn", "service-a", ttl_s=30)
    now[0] += 25
    assert leases.acquire("retrain:churn", "service-b", ttl_s=30) is None, "renewed, still held"
    now[0] += 10  # service-a crashed and stopped renewing: its lease expired
    taken = leases.acquire("retrain:churn", "service-b", ttl_s=30)
    assert taken is not None and leases.holder("retrain:churn").holder == "service-b"
    from driftloop.retrain import LeaseLost

    with pytest.raises(LeaseLost):
        leases.renew("retrain:churn", "service-a", ttl_s=30)
    assert leases.release("retrain:churn", "service-b") and leases.holder("retrain:churn") is None
