"""Connecting to Ray: a cluster when `ray.address` (or RAY_ADDRESS) is set, else a local Ray."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from driftloop.settings import RaySettings

AUTH_MODE = "RAY_AUTH_MODE"


def connect_ray(settings: RaySettings) -> None:
    """ray.init for driftloop's jobs; a no-op when this process is already connected.

    A cluster is joined with whatever auth mode the user gave Ray (RAY_AUTH_MODE, as Ray reads
    it). A local Ray, which only this machine reaches, starts without token auth unless the user
    chose a mode; the choice is made for the processes Ray starts, not for this process's
    environment, which is left as it was.
    """
    import ray

    if ray.is_initialized():
        return
    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **options)
        return
    with _local_auth_mode():
        ray.init(num_cpus=settings.num_cpus, **options)


@contextlib.contextmanager
def _local_auth_mode() -> Iterator[None]:
    """RAY_AUTH_MODE=disabled while a local Ray starts (no ~/.ray/auth_token), unless the user set a mode."""
    if AUTH_MODE in os.environ:
        yield
        return
    os.environ[AUTH_MODE] = "disabled"
    try:
        yield
    finally:
        os.environ.pop(AUTH_MODE, None)
