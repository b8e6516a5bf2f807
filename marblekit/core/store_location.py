"""Where a store lives: a local folder, or any fsspec URL (``s3://bucket/path.zarr``, ``gs://...``).

Readers and writers name a store by one string and reach its objects through zarr, which opens URLs with
fsspec. Credentials are the filesystem's own business and never a marblekit flag (flags end up in logs and
shell histories): for ``s3://`` that is s3fs reading the AWS environment variables, ``~/.aws`` or an
instance role, and ``AWS_ENDPOINT_URL`` for an S3-compatible server such as MinIO.
"""

from __future__ import annotations

from pathlib import Path

StoreLocation = str | Path


def is_url(location: StoreLocation) -> bool:
    """True for a filesystem URL (``scheme://...``); a local path otherwise."""
    return "://" in str(location)


def store_location(text: str) -> StoreLocation:
    """A command-line store argument: a URL stays text (``Path`` would fold its ``//``), a path becomes a Path."""
    return text.rstrip("/") if is_url(text) else Path(text)


def exists(location: StoreLocation) -> bool:
    if not is_url(location):
        return Path(location).exists()
    import fsspec

    filesystem, path = fsspec.core.url_to_fs(str(location))
    return bool(filesystem.exists(path))
