"""Start, find and stop one service process of the local stack, tracked by a pid file.

`down` must stop only what `up` started, so each service records its pid and
the command it ran; a pid whose /proc cmdline no longer matches belongs to
someone else and is left alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class MissingTool(RuntimeError):
    """A program the stack needs is not installed; the message says what to install."""


def require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingTool(f"'{name}' not found on PATH: {install_hint}")
    return path


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A port nothing listens on right now (for tests; the stack's ports are settings)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceExited(RuntimeError):
    """The service died while it was starting: waiting longer cannot make it ready."""


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> float:
    """Poll `check` until it is true; return the seconds it took, or raise TimeoutError.

    A `check` that raises ServiceExited ends the wait at once with it; any other error counts as
    "not yet" (a service that is still starting may answer with anything).
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            if check():
                return time.monotonic() - start
        except ServiceExited:
            raise
        except Exception:  # noqa: BLE001 - still starting
            pass
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f} s")


@dataclass(frozen=True)
class ServiceProcess:
    """One long-running program, its pid file and its log, under the stack's state directory."""

    name: str
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The recorded pid if that process is still ours and alive, else None."""
        try:
            pid_text, marker = self.pid_file.read_text().split("\n", 1)
            pid = int(pid_text)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            return None
        return pid if marker.strip() and marker.strip() in cmdline else None

    def start(self, command: list[str], marker: str, env: dict[str, str] | None = None) -> int:
        """Launch `command` detached, logging to `log_file`. `marker` identifies it in /proc later."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives the CLI; not killed by its Ctrl-C
                env={**os.environ, **(env or {})},
            )
        self.pid_file.write_text(f"{process.pid}\n{marker}\n")
        return process.pid

    def exited_early(self) -> bool:
        """True when the process we started has died (for a fast failure while waiting)."""
        return self.pid_file.exists() and self.pid() is None

    def stop(self, timeout_s: float = 20.0, hard: bool = False) -> bool:
        """SIGTERM (or SIGKILL when `hard`), wait for exit; True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGKILL if hard else signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _alive(pid: int) -> bool:
    """Alive and not a zombie (a killed child of ours stays a zombie until reaped)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
