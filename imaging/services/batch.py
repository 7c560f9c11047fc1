"""Ingest of many files at once: folders, zip archives, browser uploads. Used by the CLI and the upload API."""

import contextlib
import os
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from imaging import storage
from imaging.services.ingest import IngestResult, ingest_files

MAX_ZIP_MEMBERS = 100_000


@dataclass
class BatchSummary:
    results: list[IngestResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counter = Counter(r.status for r in self.results)
        return {status: counter.get(status, 0) for status in ("stored", "duplicate", "rejected")}

    def as_dict(self) -> dict:
        return {**self.counts(), "results": [r.as_dict() for r in self.results]}


def iter_sources(paths: Iterable[str]) -> Iterator[str]:
    """Every file under the given files and folders, sorted, hidden files skipped."""
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith("."):
                        yield os.path.join(root, name)
        else:
            yield path


def count_items(paths: list[str]) -> int:
    """How many DICOM candidates the paths hold (zip members counted), for a progress bar."""
    total = 0
    for path in iter_sources(paths):
        if zipfile.is_zipfile(path):
            try:
                with zipfile.ZipFile(path) as archive:
                    total += sum(1 for info in archive.infolist() if not info.is_dir())
            except zipfile.BadZipFile:
                total += 1
        else:
            total += 1
    return total


def ingest_paths(paths: Iterable[str], *, user=None, source: str, consume: bool = False, request=None,
                 deidentify: bool | None = None,
                 on_result: Callable[[IngestResult], None] | None = None) -> BatchSummary:
    """Ingest files, folders and zip archives; one result per file (zip members named archive.zip!member).

    Files are parsed in worker processes a few ahead of the indexing (imaging.services.pool).
    """
    summary = BatchSummary()
    extracted: set[str] = set()

    def record(result: IngestResult) -> None:
        summary.results.append(result)
        if on_result is not None:
            on_result(result)

    def items():
        for path in iter_sources(paths):
            if not os.path.exists(path):
                record(IngestResult("rejected", path, reason="no such file or folder", code="not_found"))
            elif zipfile.is_zipfile(path):
                yield from _zip_members(path, extracted, record)
                if consume:
                    os.unlink(path)
            else:
                yield path, path

    stored = ingest_files(items(), user=user, source=source, consume=consume, request=request, deidentify=deidentify)
    try:
        # closing: whatever happens, the read-ahead thread stops before the extracted files are cleaned up below
        with contextlib.closing(stored):
            for path, result in stored:
                record(result)
                if path in extracted:
                    extracted.discard(path)
                    if os.path.exists(path):
                        os.unlink(path)
    finally:
        for path in list(extracted):
            if os.path.exists(path):
                os.unlink(path)
    return summary


def _zip_members(path: str, extracted: set[str], record):
    """Extract each member of a zip to a temporary file and yield it (path, 'archive.zip!member')."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        record(IngestResult("rejected", path, reason=f"corrupt zip archive: {exc}", code="corrupt"))
        return
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            record(IngestResult("rejected", path, reason=f"zip holds {len(members)} files, over {MAX_ZIP_MEMBERS}",
                                code="too_large"))
            return
        for info in members:
            name = f"{path}!{info.filename}"
            fd, tmp = storage.temp_file(".dcm")
            extracted.add(tmp)
            try:
                with os.fdopen(fd, "wb") as out, archive.open(info) as member:
                    while chunk := member.read(1024 * 1024):
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                record(IngestResult("rejected", name, reason=f"cannot extract from the zip: {exc}", code="corrupt"))
                continue
            yield tmp, name
