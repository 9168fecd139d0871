"""A version's files (weights, feature spec, ONNX towers) in a local folder or in object storage.

Locally (the default) a version's folder is used where it is. With an fsspec URL as the model
store (``s3://bucket/models``, ``gs://...``; the matching fsspec package installed), files are
written to a local working copy, published to the store, and read back through a local cache,
so steps that run in different pods or machines see the same files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from upath import UPath


def is_remote(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def publish_dir(local_dir: Path, store: str, version: str) -> str:
    """Copy a version's local folder to the store; return where the version now lives."""
    if not is_remote(store):
        return str(local_dir)
    target = UPath(store) / version
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(local_dir.iterdir()):
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return str(target)


def local_copy(location: str, cache_root: Path) -> Path:
    """A local path for a file or folder that may live in object storage (downloaded once)."""
    if not is_remote(location):
        return Path(location.removeprefix("file://"))
    source = UPath(location)
    cached = cache_root / hashlib.sha256(location.encode()).hexdigest()[:16] / source.name
    if cached.exists():
        return cached
    partial = cached.with_name(cached.name + ".partial")
    if source.is_dir():
        partial.mkdir(parents=True, exist_ok=True)
        for child in source.iterdir():
            if child.is_file():
                (partial / child.name).write_bytes(child.read_bytes())
    else:
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(source.read_bytes())
    partial.rename(cached)
    return cached
