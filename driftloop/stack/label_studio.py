"""A real Label Studio server (the PyPI package, in a virtualenv of its own) for labelling batches.

Label Studio pins pyarrow < 25, driftloop needs 26, so it cannot live in driftloop's environment;
it does not need to, it is a server. `./run setup` installs `label-studio.lock` (the package and
its whole tree, pinned) into `<cache_dir>/label-studio-<version>/`, redone only when the lock
changes, and migrates an empty database there once (`template.sqlite3`). The stack runs it on
127.0.0.1 with its SQLite database under the state directory (a copy of the template, so a first
start does not spend minutes migrating), creates its admin user and API token on first start
(kept in `credentials.json`, mode 0600), and calls it ready when the API answers that token.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from driftloop.settings import StackSettings
from driftloop.stack.process import MissingTool, ServiceExited, ServiceProcess, wait_until

LABEL_STUDIO_VERSION = "1.23.2"  # label-studio.lock pins the same (tests/test_label_studio_stack.py checks)
CREDENTIALS_FILE = "credentials.json"
TEMPLATE_DATABASE = "template.sqlite3"  # in the virtualenv: an empty database, migrated once by ./run setup


def label_studio_venv(stack: StackSettings) -> Path:
    return stack.cache_dir / f"label-studio-{LABEL_STUDIO_VERSION}"


@dataclass(frozen=True)
class Credentials:
    """The local Label Studio's admin, its API token, and the secret its webhooks carry."""

    username: str
    password: str
    token: str
    webhook_secret: str


def local_credentials(stack: StackSettings, username: str = "admin@driftloop.local") -> Credentials:
    """The local Label Studio's credentials, made (random, file mode 0600) the first time they are asked for."""
    path = stack.state_dir / "label-studio" / CREDENTIALS_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        made = {"username": username, "password": secrets.token_urlsafe(18), "token": secrets.token_hex(20),
                "webhook_secret": secrets.token_urlsafe(24)}
        temporary = path.with_name(f".{CREDENTIALS_FILE}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(made, handle)
        try:
            os.link(temporary, path)  # the first process to get here wins; the others read its file
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return Credentials(**json.loads(path.read_text()))


class LabelStudioServer:
    """The local Label Studio's files, process and readiness."""

    name = "label-studio"

    def __init__(self, stack: StackSettings, username: str = "admin@driftloop.local") -> None:
        self.stack = stack
        self.username = username
        self.home = stack.state_dir / "label-studio"
        self.process = ServiceProcess(self.name, stack.state_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.stack.label_studio_port}"

    @property
    def credentials_file(self) -> Path:
        return self.home / CREDENTIALS_FILE

    @property
    def database(self) -> Path:
        return self.home / "label_studio.sqlite3"

    def executable(self) -> Path:
        binary = label_studio_venv(self.stack) / "bin" / "label-studio"
        if not binary.exists():
            raise MissingTool(
                f"Label Studio {LABEL_STUDIO_VERSION} is not installed in {binary.parent.parent}: run ./run setup "
                "(it installs label-studio.lock there), or set DRIFTLOOP_STACK__START_LABEL_STUDIO=false"
            )
        return binary

    def start(self) -> None:
        binary = self.executable()
        credentials = local_credentials(self.stack, self.username)
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        template = label_studio_venv(self.stack) / TEMPLATE_DATABASE
        if not self.database.exists() and template.is_file():  # migrated by ./run setup: skips minutes of migrations
            shutil.copyfile(template, self.database)
        self.process.start(
            [str(binary), "start", "--no-browser", "--internal-host", "127.0.0.1",
             "--port", str(self.stack.label_studio_port), "--data-dir", str(data), "--database", str(self.database),
             "--username", credentials.username, "--password", credentials.password,
             "--user-token", credentials.token, "--enable-legacy-api-token", "--log-level", "WARNING"],
            marker=str(self.database),
            env={
                "LABEL_STUDIO_BASE_DATA_DIR": str(data),
                "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # `Authorization: Token <token>` for the API
                "SSRF_PROTECTION_ENABLED": "false",  # its webhooks go to the ingestion API on 127.0.0.1
                "WEBHOOK_TIMEOUT": "10",  # seconds; the API answers once Kafka acknowledged the label
                "COLLECT_ANALYTICS": "false",
                "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",  # it reports its errors to Sentry otherwise
                "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
                "HOME": str(self.home),  # it keeps a few files under ~/.local/share otherwise
            },
        )

    def ready(self) -> bool:
        """The API answers the admin's token (not only /health: the first start migrates, then makes the user)."""
        if not self.credentials_file.is_file():  # never started here: nothing to ask (and nothing made by asking)
            return False
        token = local_credentials(self.stack, self.username).token
        request = urllib.request.Request(f"{self.url}/api/current-user/whoami",
                                         headers={"Authorization": f"Token {token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200

    def wait_ready(self, timeout_s: float = 600.0) -> float:
        """Seconds until it answers (its first start migrates the database: minutes on a busy machine)."""
        start = time.monotonic()
        while True:
            if self.process.exited_early() and _still(self.process.exited_early):  # (wait_until would take it for "not yet")
                raise ServiceExited(f"Label Studio exited during start; log {self.process.log_file}:\n"
                                   f"{self.process.log_tail()}")
            try:
                wait_until(self.ready, min(5.0, timeout_s), "Label Studio", 0.5)
                return time.monotonic() - start
            except TimeoutError:
                if time.monotonic() - start >= timeout_s:
                    raise TimeoutError(f"Label Studio on {self.url} not ready after {timeout_s:.0f} s; log "
                                       f"{self.process.log_file}:\n{self.process.log_tail()}") from None


def _still(condition, after_s: float = 1.0) -> bool:
    """`condition` holds again after a second: a just-started process was once seen as gone while it ran."""
    time.sleep(after_s)
    return condition()
