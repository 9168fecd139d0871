"""A version's files (weights, feature spec, ONNX towers) in a local folder or in object storage.

Locally (the default) a version's folder is used where it is. With an fsspec URL as the model
store (``s3://bucket/models``, ``gs://...``; the matching fsspec package installed), files are
written to a local working copy, published to the store, and read back through a local cache,
so steps that run in different pods or machines see the same files.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
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
    # Download beside the target under a unique name, then move it into place: two processes
    # fetching at once both end with a complete copy. A version's files never change once
    # published, so a cached copy never goes stale.
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".partial-")) / source.name
    if source.is_dir():
        partial.mkdir()
        for child in source.iterdir():
            if child.is_file():
                (partial / child.name).write_bytes(child.read_bytes())
    else:
        partial.write_bytes(source.read_bytes())
    try:
        partial.rename(cached)
    except OSError:
        if not cached.exists():
            raise
    finally:
        shutil.rmtree(partial.parent, ignore_errors=True)
    return cached
