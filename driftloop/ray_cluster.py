"""Connecting to Ray: a cluster when `ray.address` (or RAY_ADDRESS) is set, else a local Ray."""

from __future__ import annotations

import os
import socket

from driftloop.settings import RaySettings

CONNECT_TIMEOUT_S = 10.0


class RayUnreachable(ConnectionError):
    """The Ray cluster at the configured address does not answer."""


def connect_ray(settings: RaySettings) -> None:
    """ray.init for driftloop's jobs; a no-op when this process is already connected.

    A cluster address is checked first (a TCP connection within CONNECT_TIMEOUT_S): `ray.init`
    on an address nobody listens at retries for minutes.
    """
    import ray

    if ray.is_initialized():
        return
    # Local use needs no token; a real cluster keeps whatever auth mode it was given.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)
    ray.init(
        address=address,
        num_cpus=None if address else settings.num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """RayUnreachable unless something accepts a TCP connection at `address` (host:port or ray://host:port)."""
    if address in ("auto", "local"):
        return
    hostport = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnreachable(f"Ray address {address!r} is not host:port (or ray://host:port)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        raise RayUnreachable(f"nothing answers at {host}:{port} ({error})") from None
