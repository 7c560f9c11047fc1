"""multipart/related: reading STOW-RS bodies as a stream, and framing WADO-RS answers.

Django has no multipart/related parser. This one reads the body in chunks and writes each part straight to a
temporary file, so that a body of any size costs a fixed amount of memory.
"""

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

CHUNK = 1024 * 1024
_PARAM = re.compile(r';\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)')


def media_params(content_type: str) -> tuple[str, dict[str, str]]:
    """'multipart/related; type="application/dicom"; boundary=x' -> ('multipart/related', {...})."""
    main = content_type.split(";", 1)[0].strip().lower()
    params = {k.lower(): v.strip('"') for k, v in _PARAM.findall(content_type)}
    return main, params


class MultipartError(ValueError):
    pass


@dataclass
class Part:
    content_type: str
    path: str | None  # temporary file with the part's body; None when the part was dropped
    size: int
    error: str = ""


def read_parts(stream, content_type: str, *, temp_file, max_part_bytes: int) -> Iterator[Part]:
    """Yield each part of a multipart body, its content written to a temporary file from ``temp_file()``.

    A part over ``max_part_bytes`` is dropped (path None, error set) without stopping the others. The caller
    owns the files. Tolerates a preamble (OHIF sends a leading CRLF) and a quoted boundary.

    The body is read in 1 MiB chunks; ``buffer[pos:]`` is what is not consumed yet. Part bodies are written
    from memoryview slices and each search starts where the last one stopped, so every byte is copied about
    once (a part is often a few hundred kB: re-slicing the rest of the chunk for each one cost more than the
    write itself).
    """
    main, params = media_params(content_type)
    if not main.startswith("multipart/"):
        raise MultipartError(f"expected a multipart/related body, got {main or 'no Content-Type'}")
    boundary = params.get("boundary")
    if not boundary:
        raise MultipartError("the multipart Content-Type has no boundary parameter")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    keep = len(delimiter) - 1  # a delimiter may straddle two chunks: keep this much unwritten
    buffer = b"\r\n"  # lets a body that starts directly with the delimiter match like the others
    pos = 0
    eof = False

    def fill() -> bool:
        nonlocal buffer, pos, eof
        if eof:
            return False
        chunk = stream.read(CHUNK)
        if not chunk:
            eof = True
            return False
        buffer = buffer[pos:] + chunk if pos < len(buffer) else chunk
        pos = 0
        return True

    while (found := buffer.find(delimiter, pos)) < 0:  # skip the preamble
        pos = max(pos, len(buffer) - keep)
        if not fill():
            raise MultipartError("no multipart boundary found in the body")
    pos = found + len(delimiter)
    while True:
        while len(buffer) - pos < 2 and fill():
            pass
        if buffer.startswith(b"--", pos):
            return
        while (end := buffer.find(b"\r\n\r\n", pos)) < 0:
            if len(buffer) - pos > 64 * 1024 or not fill():
                raise MultipartError("a part's headers are malformed or never end")
        headers = _headers(buffer[pos:end])
        pos = end + 4
        part_type = headers.get("content-type", "application/octet-stream")
        fd, path = temp_file()
        size, dropped, closed = 0, "", False
        try:
            with os.fdopen(fd, "wb") as out:
                search = pos
                while True:
                    found = buffer.find(delimiter, search)
                    stop = found if found >= 0 else max(pos, len(buffer) - keep)
                    size += stop - pos
                    if size > max_part_bytes:
                        dropped = f"part of more than {max_part_bytes} bytes is over the limit (OKAPI_MAX_INSTANCE_BYTES)"
                    elif stop > pos:
                        out.write(memoryview(buffer)[pos:stop])
                    if found >= 0:
                        pos = found + len(delimiter)
                        closed = True
                        break
                    pos = stop
                    if not fill():
                        break
                    search = 0  # fill() moved the unconsumed rest to the start
        except BaseException:
            os.unlink(path)
            raise
        if not closed:
            os.unlink(path)
            raise MultipartError("the body ended inside a part (truncated upload?)")
        if dropped:
            os.unlink(path)
            yield Part(part_type, None, size, dropped)
        else:
            yield Part(part_type, path, size)


def _headers(block: bytes) -> dict[str, str]:
    headers = {}
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


def new_boundary() -> str:
    return uuid.uuid4().hex


def frame_part(data: bytes, boundary: str, content_type: str) -> bytes:
    """One part as OHIF's parser wants it: 'Content-Type:' spelled exactly, CRLF framing."""
    return (f"--{boundary}\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            + data + b"\r\n")


def closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode()
