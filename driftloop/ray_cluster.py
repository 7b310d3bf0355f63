"""Joining Ray: a cluster by address (checked before Ray's own long retries), or a local Ray without token auth."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from driftloop.settings import RaySettings

AUTH_MODE = "RAY_AUTH_MODE"
# How often Ray Train V2's controller polls its workers. A worker's report waits in a queue of one
# until the next poll, so with Ray's 2 s default every epoch of a small model took 2 s.
REPORT_POLL = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
CONNECT_TIMEOUT_S = 10.0


class RayUnreachable(ConnectionError):
    """The Ray cluster at the configured address does not answer."""


def connect_ray(settings: RaySettings) -> None:
    """ray.init for driftloop's jobs; a no-op when this process is already connected.

    A cluster address is checked first (a TCP connection within CONNECT_TIMEOUT_S): `ray.init`
    on an address nobody listens at retries for minutes. A cluster is joined with whatever auth
    mode the user gave Ray (RAY_AUTH_MODE, as Ray reads it). A local Ray, which only this machine
    reaches, starts without token auth unless the user chose a mode; the choice is made for the
    processes Ray starts, not for this process's environment, which is left as it was. The job's
    processes (Ray Train's controller among them) get `settings.report_poll_s` as Ray Train's poll.
    """
    import ray

    if ray.is_initialized():
        return
    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if REPORT_POLL not in os.environ:  # the user's own value reaches Ray Train from this process's environment
        options["runtime_env"] = {"env_vars": {REPORT_POLL: f"{settings.report_poll_s:g}"}}
    if address:
        check_reachable(address)
        ray.init(address=address, **options)
        return
    with _local_auth_mode():
        ray.init(num_cpus=settings.num_cpus, **options)


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
