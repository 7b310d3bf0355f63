"""Publishing the dashboards into a Grafana through its HTTP API, with the `grafana-api` client.

`grafana-api` (plain `requests`) rather than its fork `grafana-client`: the fork depends on
niquests, whose urllib3-future replaces `urllib3` for every package of the environment (Ray,
requests, MLflow), which a monitoring tool must not do to the service it is installed into.

Each dashboard goes to `POST /api/dashboards/db` into one folder (created when missing). With
`overwrite` (the default: the code is the source of truth) Grafana's copy is replaced whatever
its version; without it, a dashboard that already exists in Grafana is refused with 412.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import requests
from grafana_api.grafana_api import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError
from grafana_api.grafana_face import GrafanaFace


class PublishError(RuntimeError):
    """Grafana refused, or could not be reached; the message says what to do."""


@dataclass(frozen=True)
class Published:
    uid: str
    title: str
    version: int
    url: str


def connect(url: str, token: str | None = None, basic_auth: tuple[str, str] | None = None,
            timeout_s: float = 10.0) -> GrafanaFace:
    """A client for the Grafana at `url` (http[s]://host[:port][/prefix]), by API token or basic auth."""
    if (token is None) == (basic_auth is None):
        raise ValueError("give a Grafana service-account token or a user and password (one of them)")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not a Grafana URL like http://grafana.internal:3000")
    prefix = parts.path.strip("/")
    return GrafanaFace(auth=token if token is not None else basic_auth, host=parts.hostname, port=parts.port,
                       url_path_prefix=f"{prefix}/" if prefix else "", protocol=parts.scheme, timeout=timeout_s)


def publish(grafana: GrafanaFace, dashboards: list[dict], folder_uid: str = "driftloop",
            folder_title: str = "driftloop", overwrite: bool = True) -> list[Published]:
    """Create or overwrite `dashboards` (Grafana JSON models) in one folder; what Grafana answered for each."""
    where = grafana.api.url.removesuffix("/api")
    try:
        _ensure_folder(grafana, folder_uid, folder_title)
        published = []
        for document in dashboards:
            body = {"dashboard": {**document, "id": None}, "folderUid": folder_uid, "overwrite": overwrite,
                    "message": "published by driftloop dashboards publish"}
            answer = grafana.dashboard.update_dashboard(body)
            published.append(Published(answer["uid"], document["title"], int(answer["version"]), answer["url"]))
        return published
    except requests.ConnectionError:
        raise PublishError(f"Grafana at {where} is not reachable: check --url and that Grafana runs") from None
    except requests.Timeout:
        raise PublishError(f"Grafana at {where} did not answer in time") from None
    except GrafanaUnauthorizedError:
        raise PublishError(f"Grafana at {where} refused the credentials (401): check the token, or the user "
                           "and password") from None
    except GrafanaClientError as error:
        raise PublishError(_client_error(error, where)) from None
    except GrafanaException as error:
        raise PublishError(f"Grafana at {where} failed ({error.status_code}): {error.message}") from None


def _ensure_folder(grafana: GrafanaFace, uid: str, title: str) -> None:
    try:
        grafana.folder.get_folder(uid)
    except GrafanaClientError as error:
        if error.status_code != 404:
            raise
        grafana.folder.create_folder(title, uid=uid)


def _client_error(error: GrafanaClientError, where: str) -> str:
    status = error.response.get("status") if isinstance(error.response, dict) else None
    message = error.response.get("message") if isinstance(error.response, dict) else str(error.response)
    if error.status_code == 403:
        return (f"Grafana at {where} denied the write (403): the token's role cannot create dashboards in the "
                "folder; use an Editor or Admin service-account token")
    if error.status_code == 412 and status == "version-mismatch":
        return (f"Grafana at {where} has a newer version of a dashboard ({message}, version-mismatch): it was "
                "changed there; publish with --overwrite to replace it with the code's version")
    if error.status_code == 412 and status == "name-exists":
        return (f"Grafana at {where} already has a dashboard with this name or uid ({message}, name-exists): "
                "publish with --overwrite to replace it")
    return f"Grafana at {where} refused a dashboard ({error.status_code}): {message}"
