"""Content-addressed model artifacts: a folder of files, named by the sha256 of its manifest.

An artifact is the folder a model version needs to be served: its weights (a `state_dict`),
the JSON that rebuilds the module and its preprocessing, and the reference profile of its
training data. `put` writes `manifest.json` (every file with its size and sha256), names the
folder by the sha256 of that manifest, and moves it into place whole. `verified` checks the
manifest's hash and every file against it before handing out the folder, so a tampered,
truncated or partly deleted artifact is refused, never served.

    store = ArtifactStore(Path("data/registry/artifacts"))
    digest = store.put(model_folder)         # copied into the store, whole or not at all
    folder = store.verified(digest)          # ArtifactError if anything changed since
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

__all__ = ["MANIFEST", "ArtifactError", "ArtifactStore"]

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
_CHUNK = 1 << 20


class ArtifactError(RuntimeError):
    """An artifact is missing or does not match its sha256: it must not be served."""


class ArtifactStore:
    """Folders under `root/<sha256[:2]>/<sha256>/`, each written once and never changed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, folder: Path) -> str:
        """Copy `folder` into the store under the sha256 of its manifest, and return that sha256.

        The copy is written aside and renamed into place, so the store never holds half an
        artifact; `folder` is left as it was (a retried registration finds it again). Putting
        the same content twice keeps one copy.
        """
        folder = Path(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
        if not files:
            raise ArtifactError(f"{folder} holds no files to store")
        manifest = {
            "format_version": FORMAT_VERSION,
            "files": {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _file_sha256(p)}
                      for p in files},
        }
        encoded = _canonical(manifest)
        digest = hashlib.sha256(encoded).hexdigest()
        target = self.path(digest)
        if (target / MANIFEST).exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{digest}.{uuid.uuid4().hex[:8]}.tmp"
        shutil.copytree(folder, staging, ignore=shutil.ignore_patterns(MANIFEST))
        (staging / MANIFEST).write_bytes(encoded)
        for path in staging.rglob("*"):
            if path.is_file():
                _fsync(path)
        try:
            os.rename(staging, target)
        except OSError:  # another writer put the same content first
            shutil.rmtree(staging, ignore_errors=True)
            if not (target / MANIFEST).exists():
                raise
        return digest

    def verified(self, digest: str) -> Path:
        """The artifact's folder, after checking its manifest hash and every file; else ArtifactError."""
        folder = self.path(digest)
        manifest_file = folder / MANIFEST
        if not manifest_file.is_file():
            raise ArtifactError(f"artifact {digest} is missing: no {manifest_file}")
        encoded = manifest_file.read_bytes()
        if hashlib.sha256(encoded).hexdigest() != digest:
            raise ArtifactError(f"artifact {digest}: its manifest was changed (sha256 does not match); not loading it")
        try:
            files = json.loads(encoded)["files"]
        except (ValueError, KeyError, TypeError) as error:
            raise ArtifactError(f"artifact {digest}: unreadable manifest ({error})") from None
        for name, expected in files.items():
            path = folder / name
            if not path.is_file():
                raise ArtifactError(f"artifact {digest}: file {name} is missing; not loading it")
            size = path.stat().st_size
            if size != expected["bytes"]:
                raise ArtifactError(f"artifact {digest}: {name} has {size} bytes, expected {expected['bytes']} "
                                    "(truncated or replaced); not loading it")
            actual = _file_sha256(path)
            if actual != expected["sha256"]:
                raise ArtifactError(f"artifact {digest}: {name} has sha256 {actual[:12]}..., expected "
                                    f"{expected['sha256'][:12]}... (tampered or damaged); not loading it")
        extra = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                       if p.is_file() and p.name != MANIFEST and p.relative_to(folder).as_posix() not in files)
        if extra:
            raise ArtifactError(f"artifact {digest}: files not in its manifest: {extra}; not loading it")
        return folder


def _canonical(document: dict) -> bytes:
    return (json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n").encode()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
