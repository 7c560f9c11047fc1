"""Helpers for archive tests."""

import uuid


def multipart_body(parts: list[bytes], boundary: str | None = None, *, preamble: bool = True) -> tuple[bytes, str]:
    """A STOW-RS body as OHIF sends it (leading CRLF, quoted boundary)."""
    boundary = boundary or uuid.uuid4().hex
    body = b"\r\n" if preamble else b""
    for part in parts:
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
    body += f"--{boundary}--".encode()
    return body, f'multipart/related; type="application/dicom"; boundary="{boundary}"'
