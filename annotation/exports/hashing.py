"""Content hashes of exports: a SHA-256 over a canonical manifest, never over archive bytes.

The manifest (``manifest.json`` in the archive) lists every other file with its SHA-256 and size, sorted by
path, with the request that selected the data, the label schema version and the export format. Its bytes are
canonical JSON (sorted keys, no insignificant whitespace, UTF-8), so the same request on unchanged data gives
the same manifest and the same hash whatever the archive's timestamps or the machine that built it, and anyone
can check an archive: ``sha256sum manifest.json`` is the export's content hash, and every file's own hash is in
it.
"""

import hashlib
import json

CHUNK = 1024 * 1024
FORMAT = "okapi-export/1"


def canonical_json(obj) -> bytes:
    """``obj`` as canonical JSON bytes (sorted keys, compact separators, UTF-8, newline at the end)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
                      ).encode("utf-8") + b"\n"


def pretty_json(obj) -> bytes:
    """``obj`` as stable, readable JSON bytes (sorted keys, two-space indent): for files people open."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n"


def file_sha256(path: str) -> tuple[str, int]:
    """(hex SHA-256, size in bytes) of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def build_manifest(*, files: list[dict], request: dict, schema_version: int | None, project: dict,
                   series: list[dict]) -> bytes:
    """The manifest's bytes: ``files`` ({"path", "sha256", "size"}) sorted by path, plus what selected them."""
    return canonical_json({
        "format": FORMAT,
        "project": project,
        "request": request,
        "schema_version": schema_version,
        "series": series,
        "files": sorted(files, key=lambda f: f["path"]),
    })


def content_hash(manifest: bytes) -> str:
    """The export's content hash: SHA-256 of its manifest bytes."""
    return hashlib.sha256(manifest).hexdigest()
