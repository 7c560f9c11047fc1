"""Where stored DICOM files live: the default Django storage (files under the data folder, or S3).

Serving reads byte ranges of a stored file (frames): on disk with pread, on S3 with ranged GETs, never the
whole object.
"""

import os
import shutil
import tempfile
from typing import BinaryIO

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage


def instance_key(study_uid: str, series_uid: str, sop_uid: str) -> str:
    return f"dicom/{study_uid}/{series_uid}/{sop_uid}.dcm"


def is_local() -> bool:
    """Files on disk (not object storage): a file moved there can be taken back (:func:`take_back`)."""
    return isinstance(default_storage, FileSystemStorage)


def local_path(key: str) -> str | None:
    """Filesystem path of a stored file, or None on object storage."""
    return default_storage.path(key) if is_local() else None


def temp_file(suffix: str = ".part") -> tuple[int, str]:
    """A temporary file beside the storage (same filesystem: moving it in is a rename)."""
    return tempfile.mkstemp(dir=settings.FILE_UPLOAD_TEMP_DIR, suffix=suffix)


def put_file(source: str, key: str, *, move: bool) -> None:
    """Store the file at ``source`` under ``key`` atomically: readers see the old file or the whole new one."""
    if is_local():
        target = default_storage.path(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if move:
            os.replace(source, target)
            return
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), suffix=".part")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            _unlink(tmp)
            raise
        return
    with open(source, "rb") as fh:
        default_storage.bucket.upload_fileobj(fh, default_storage._normalize_name(key))
    if move:
        _unlink(source)


def take_back(key: str, source: str, *, moved: bool) -> None:
    """Undo :func:`put_file` (a transaction that stored several files failed): a moved file goes back to
    ``source``, a copy is deleted."""
    if moved:  # only on disk: ingest groups files only there (is_local)
        os.replace(default_storage.path(key), source)
    else:
        delete_file(key)


def delete_file(key: str) -> None:
    if is_local():
        _unlink(default_storage.path(key))
    else:
        default_storage.delete(key)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _S3RangeReader:
    """A read-only file over an S3 object that fetches only the byte ranges asked for."""

    def __init__(self, key: str):
        self._object = default_storage.bucket.Object(default_storage._normalize_name(key))
        self._pos = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = offset
        elif whence == 1:
            self._pos += offset
        else:
            self._pos = self._object.content_length + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = "" if size is None or size < 0 else str(self._pos + size - 1)
        if size == 0:
            return b""
        body = self._object.get(Range=f"bytes={self._pos}-{end}")["Body"].read()
        self._pos += len(body)
        return body

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_file(key: str) -> BinaryIO:
    """Open a stored file for reading (seek/read; on disk it has a fileno for pread)."""
    if is_local():
        return open(default_storage.path(key), "rb", buffering=0)
    return _S3RangeReader(key)


def iter_file(key: str, chunk_size: int = 1024 * 1024):
    """The whole stored file, in chunks (instance retrieve)."""
    with (open(default_storage.path(key), "rb") if is_local() else default_storage.open(key, "rb")) as fh:
        while chunk := fh.read(chunk_size):
            yield chunk
