"""Ray's auth mode: a local Ray starts without a token, and the process environment is left as the user set it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, os, pathlib, ray
from driftloop.ray_cluster import connect_ray
from driftloop.settings import RaySettings

before = os.environ.get("RAY_AUTH_MODE")
connect_ray(RaySettings(num_cpus=1))

@ray.remote
def worker_mode():
    return os.environ.get("RAY_AUTH_MODE")

print(json.dumps({
    "before": before,
    "after": os.environ.get("RAY_AUTH_MODE"),
    "worker": ray.get(worker_mode.remote(), timeout=120),
    "token_file": (pathlib.Path.home() / ".ray" / "auth_token").exists(),
}))
ray.shutdown()
"""


def probe(tmp_path, **env) -> dict:
    """connect_ray in a process of its own (the session's Ray stays apart), with HOME in tmp_path."""
    environment = {key: value for key, value in os.environ.items() if key not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    environment.update(HOME=str(tmp_path), **env)
    done = subprocess.run([sys.executable, "-c", PROBE], env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_local_ray_starts_without_a_token_and_the_environment_is_left_alone(tmp_path):
    seen = probe(tmp_path)
    assert seen["before"] is None and seen["after"] is None, "RAY_AUTH_MODE was not set for the whole process"
    assert seen["worker"] == "disabled", "the local Ray's own processes run without token auth"
    assert not seen["token_file"], "no ~/.ray/auth_token for a throwaway local Ray"


def test_an_auth_mode_the_user_set_is_kept(tmp_path):
    seen = probe(tmp_path, RAY_AUTH_MODE="token")
    assert seen["before"] == seen["after"] == seen["worker"] == "token"
    assert seen["token_file"], "Ray made the token the user asked for"
