"""A loopback server that holds to Grafana's documented dashboard and folder HTTP API.

No Grafana server is installable on our machines, so publishing is tested against this: it
enforces what the `POST /api/dashboards/db` contract says a client must respect (bearer or
basic auth, 401/403, the body's shape, folders by uid, 412 `version-mismatch` / `name-exists`
without `overwrite`), and keeps what it was given, so tests read it back as Grafana would serve it.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from driftloop.stack import free_port


@dataclass
class GrafanaState:
    editor_token: str = "editor-token"
    viewer_token: str = "viewer-token"
    basic_user: tuple[str, str] = ("admin", "admin-password")
    folders: dict[str, dict] = field(default_factory=dict)
    dashboards: dict[str, dict] = field(default_factory=dict)  # uid -> {"dashboard": ..., "folderUid": ...}


def _error(http_status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=http_status)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def create_app(state: GrafanaState) -> FastAPI:
    app = FastAPI()

    def role(request: Request) -> str | None:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return {state.editor_token: "Editor", state.viewer_token: "Viewer"}.get(credentials)
        if scheme.lower() == "basic":
            user, _, password = base64.b64decode(credentials).decode().partition(":")
            return "Admin" if (user, password) == state.basic_user else None
        return None

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        request.state.role = role(request)
        if request.state.role is None:
            return _error(401, "Unauthorized")
        if request.method != "GET" and request.state.role == "Viewer":
            return _error(403, "Access denied")
        return await call_next(request)

    @app.get("/api/folders/{uid}")
    async def get_folder(uid: str):
        if uid not in state.folders:
            return _error(404, "folder not found", status="not-found")
        return state.folders[uid]

    @app.post("/api/folders")
    async def create_folder(request: Request):
        body = await request.json()
        if not isinstance(body.get("title"), str) or not body["title"]:
            return _error(400, "folder title cannot be empty")
        uid = body.get("uid") or f"f{len(state.folders)}"
        if uid in state.folders:
            return _error(409, "a folder with the same uid already exists")
        state.folders[uid] = {"id": len(state.folders) + 1, "uid": uid, "title": body["title"], "version": 1}
        return state.folders[uid]

    @app.get("/api/dashboards/uid/{uid}")
    async def get_dashboard(uid: str):
        if uid not in state.dashboards:
            return _error(404, "Dashboard not found")
        stored = state.dashboards[uid]
        return {"dashboard": stored["dashboard"],
                "meta": {"folderUid": stored["folderUid"], "version": stored["dashboard"]["version"]}}

    @app.post("/api/dashboards/db")
    async def save_dashboard(request: Request):
        body = await request.json()
        dashboard = body.get("dashboard")
        if not isinstance(dashboard, dict) or not dashboard.get("title"):
            return _error(400, "Dashboard title cannot be empty")
        uid = dashboard.get("uid") or f"d{len(state.dashboards)}"
        if len(uid) > 40:
            return _error(400, "uid too long, max 40 characters")
        folder = body.get("folderUid") or ""
        if folder and folder not in state.folders:
            return _error(400, "folder not found")
        overwrite = bool(body.get("overwrite"))
        existing = state.dashboards.get(uid)
        same_name = [other for other, stored in state.dashboards.items()
                     if other != uid and stored["folderUid"] == folder and stored["dashboard"]["title"] == dashboard["title"]]
        if existing and not overwrite and dashboard.get("version") != existing["dashboard"]["version"]:
            return _error(412, "The dashboard has been changed by someone else", status="version-mismatch")
        if same_name and not overwrite:
            return _error(412, "A dashboard with the same name in the folder already exists", status="name-exists")
        for other in same_name:
            del state.dashboards[other]
        version = existing["dashboard"]["version"] + 1 if existing else 1
        state.dashboards[uid] = {"dashboard": {**dashboard, "uid": uid, "version": version}, "folderUid": folder}
        slug = _slug(dashboard["title"])
        return {"id": len(state.dashboards), "uid": uid, "url": f"/d/{uid}/{slug}", "status": "success",
                "version": version, "slug": slug}

    return app


class GrafanaServer:
    """The app above under uvicorn on 127.0.0.1 and a free port, in a thread; `stop()` ends it."""

    def __init__(self) -> None:
        self.state = GrafanaState()
        self.port = free_port()
        config = uvicorn.Config(create_app(self.state), host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> GrafanaServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the test Grafana did not start on port {self.port}")
            self.thread.join(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
