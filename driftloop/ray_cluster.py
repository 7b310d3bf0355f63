"""Connecting to Ray: a cluster when `ray.address` (or RAY_ADDRESS) is set, else a local Ray."""

from __future__ import annotations

import os

from driftloop.settings import RaySettings


def connect_ray(settings: RaySettings) -> None:
    """ray.init for driftloop's jobs; a no-op when this process is already connected."""
    import ray

    if ray.is_initialized():
        return
    # Local use needs no token; a real cluster keeps whatever auth mode it was given.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    ray.init(
        address=address,
        num_cpus=None if address else settings.num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
