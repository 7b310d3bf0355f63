"""Training on a Ray cluster of two nodes on this machine, reached by address, one worker per node.

The cluster is Ray's own test utility (`ray.cluster_utils.Cluster`: a head and a second node, each
its own raylet process) in a process of its own, stopped at the end; `driftloop retrain run` joins
it by address as a user's command would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from events import run_cli
from models import labelled_rows, write_reference

from driftloop.retrain_service import open_registry
from driftloop.settings import load_settings

CLUSTER = textwrap.dedent("""
    import sys
    from ray.cluster_utils import Cluster

    memory = 80 * 1024 * 1024
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": memory})
    cluster.add_node(num_cpus=1, object_store_memory=memory)
    cluster.wait_for_nodes(timeout=120)
    print(cluster.address, flush=True)
    try:
        sys.stdin.read()  # until the test is done
    finally:
        cluster.shutdown()
""")


def test_training_on_two_nodes_reached_by_address_registers_the_checkpoint(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    cluster = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=open(tmp_path / "cluster.log", "wb"), text=True, env=env)
    try:
        address = cluster.stdout.readline().strip()
        assert address, (tmp_path / "cluster.log").read_text()[-2000:]
        reference = write_reference(tmp_path / "ref.parquet", labelled_rows(3000, seed=0))
        data = tmp_path / "data"
        done = run_cli("retrain", "run", "--model", "churn", "--json", timeout=600, env={
            **env, "DRIFTLOOP_DATA_DIR": str(data), "DRIFTLOOP_RAY__ADDRESS": address,
            "DRIFTLOOP_RAY__NUM_WORKERS": "2", "DRIFTLOOP_RAY__PLACEMENT_STRATEGY": "STRICT_SPREAD",
            "DRIFTLOOP_RAY__TRAIN_TIMEOUT_S": "500", "DRIFTLOOP_RETRAIN__MIN_NEW_LABELS": "0",
            "DRIFTLOOP_RETRAIN__REFERENCE_FILES": json.dumps({"churn": str(reference)}),
            "DRIFTLOOP_RETRAIN__TRAINING": json.dumps({"epochs": 3}),
        })
        assert done.returncode == 0, done.stderr[-3000:]
        episode = json.loads(done.stdout)
        assert episode["outcome"] == "registered"
        registry = open_registry(load_settings(data_dir=data))
        version = registry.get("churn", "challenger")
        assert version.episode_id == episode["id"] and version.training.workers == 2
        assert len(set(version.training.nodes)) == 2, f"one worker per node: {version.training.nodes}"
        loaded = registry.load("churn", "challenger")  # the checkpoint reached the registry, sha256 checked
        assert loaded.predictor.predict(labelled_rows(10, seed=5)).shape == (10,)
    finally:
        cluster.stdin.close()
        try:
            cluster.wait(timeout=60)
        except subprocess.TimeoutExpired:
            cluster.kill()
            cluster.wait()
