"""Index the Pixel Data of a DICOM Part 10 file so that any frame can be served later
with a single positioned read of the stored file, without parsing it again with pydicom.

At ingest the caller runs ``pydicom.dcmread(fp, stop_before_pixels=True)`` and then
:func:`index_pixel_data` on the same file object; the resulting :class:`PixelIndex` is
stored (``to_json``) and :func:`read_frame` uses it to return the bytes of one frame as
DICOMweb serves them (compressed frames as stored, native frames in little endian).
"""

from __future__ import annotations

import io
import json
import os
import struct
from array import array
from dataclasses import dataclass
from typing import Any, BinaryIO

import pydicom
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = 0x7FE00008
DOUBLE_FLOAT_PIXEL_DATA = 0x7FE00009
_PIXEL_TAGS = (PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA)
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
# VRs that pixel data may carry in explicit VR; all use the 12-byte header form.
_PIXEL_VRS = {b"OB", b"OW", b"OF", b"OD", b"UN"}
# (implicit VR, little endian) of the native transfer syntaxes.
_NATIVE = {
    ImplicitVRLittleEndian: (True, True),
    ExplicitVRLittleEndian: (False, True),
    ExplicitVRBigEndian: (False, False),
}
# First bytes of a frame in the JPEG family: JPEG / JPEG-LS SOI, and JPEG 2000 SOC+SIZ.
_JPEG_SOI = b"\xff\xd8"
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"


class PixelDataError(ValueError):
    """The pixel data cannot be indexed; the message says why, for a human."""


@dataclass(frozen=True)
class PixelIndex:
    """Where the frames of one file's pixel data lie, enough to serve any frame."""

    tag: int
    vr: str
    encapsulated: bool
    number_of_frames: int
    value_offset: int
    value_length: int
    frame_bits: int = 0
    swap_bytes: int = 0
    fragments: tuple[tuple[tuple[int, int], ...], ...] = ()

    def to_json(self) -> str:
        """Return compact JSON; each frame's fragments are flattened to [offset, length, ...]."""
        data = {
            "tag": self.tag,
            "vr": self.vr,
            "encapsulated": self.encapsulated,
            "number_of_frames": self.number_of_frames,
            "value_offset": self.value_offset,
            "value_length": self.value_length,
            "frame_bits": self.frame_bits,
            "swap_bytes": self.swap_bytes,
            "fragments": [[x for pair in frame for x in pair] for frame in self.fragments],
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PixelIndex:
        """Rebuild an index from :meth:`to_json` output; raise ValueError if malformed."""
        try:
            data = json.loads(text)
            fragments = tuple(
                tuple((int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2))
                for flat in data["fragments"]
            )
            return cls(
                tag=int(data["tag"]),
                vr=str(data["vr"]),
                encapsulated=bool(data["encapsulated"]),
                number_of_frames=int(data["number_of_frames"]),
                value_offset=int(data["value_offset"]),
                value_length=int(data["value_length"]),
                frame_bits=int(data["frame_bits"]),
                swap_bytes=int(data["swap_bytes"]),
                fragments=fragments,
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"malformed PixelIndex JSON: {exc!r}") from exc

    def frame_length(self, n: int) -> int:
        """Return how many bytes :func:`read_frame` returns for 1-based frame ``n``."""
        self._check_frame(n)
        if self.encapsulated:
            return sum(length for _, length in self.fragments[n - 1])
        return (self.frame_bits + 7) // 8

    def _check_frame(self, n: int) -> None:
        if not 1 <= n <= self.number_of_frames:
            raise IndexError(f"frame {n} out of range 1..{self.number_of_frames}")


def index_pixel_data(
    fp: BinaryIO, *, dataset: pydicom.Dataset, transfer_syntax_uid: str, file_size: int
) -> PixelIndex | None:
    """Index the pixel data element that starts at ``fp``'s current position.

    ``fp`` must be where ``dcmread(fp, stop_before_pixels=True)`` stopped and ``dataset`` what
    it returned. Return None when there is no pixel data element there (end of file, trailing
    padding or any other element). Raise :class:`PixelDataError` when the pixel data is
    malformed, truncated or uses a transfer syntax that cannot be served from the file as is.
    """
    tsuid = UID(str(transfer_syntax_uid).strip())
    if tsuid == DeflatedExplicitVRLittleEndian:
        # The file holds a zlib stream: offsets into it mean nothing to a plain read.
        raise PixelDataError(
            f"unsupported transfer syntax: Deflated Explicit VR Little Endian ({tsuid}); "
            "frames cannot be read from the stored file without inflating it"
        )
    if tsuid in _NATIVE:
        encapsulated = False
        implicit, little = _NATIVE[tsuid]
    elif tsuid.is_transfer_syntax:
        encapsulated, implicit, little = tsuid.is_encapsulated, False, True
    else:
        # Unknown (private) syntax: pydicom reads it as explicit VR little endian; whether the
        # data is encapsulated is decided below from the element length.
        encapsulated, implicit, little = None, False, True

    start = fp.tell()
    endian = "<" if little else ">"
    head = fp.read(8)
    if len(head) < 8:
        return None
    group, element = struct.unpack(endian + "HH", head[:4])
    tag = group << 16 | element
    if tag not in _PIXEL_TAGS:
        return None
    raw_vr = head[4:6]
    if not implicit and raw_vr.isalpha() and raw_vr.isupper():
        if raw_vr not in _PIXEL_VRS:
            raise PixelDataError(f"pixel data has unexpected VR {raw_vr.decode()!r} at offset {start}")
        extra = fp.read(4)
        if len(extra) < 4:
            raise PixelDataError(f"truncated: file ends inside the pixel data element header at {start}")
        (length,) = struct.unpack(endian + "L", extra)
        vr: str | None = raw_vr.decode()
        value_offset = start + 12
    else:
        # Implicit VR, or an explicit file that switched to implicit (pydicom tolerates it).
        (length,) = struct.unpack(endian + "L", head[4:8])
        vr, value_offset = None, start + 8
    if encapsulated is None:
        encapsulated = length == _UNDEFINED

    bits = _int_attr(dataset, "BitsAllocated", {FLOAT_PIXEL_DATA: 32, DOUBLE_FLOAT_PIXEL_DATA: 64}.get(tag))
    if vr is None or vr == "UN":
        # No VR in the file (or an unhelpful UN): use the one the standard implies.
        vr = {FLOAT_PIXEL_DATA: "OF", DOUBLE_FLOAT_PIXEL_DATA: "OD"}.get(tag, "OW" if bits > 8 else "OB")
    rows = _int_attr(dataset, "Rows")
    columns = _int_attr(dataset, "Columns")
    if rows <= 0 or columns <= 0:
        raise PixelDataError(f"pixel data declares an empty image: Rows={rows}, Columns={columns}")
    frames = _int_attr(dataset, "NumberOfFrames", 1) or 1  # 0 means 1, as pydicom reads it
    if frames < 0:
        raise PixelDataError(f"invalid NumberOfFrames {frames}")

    if not encapsulated:
        return _index_native(
            dataset, tag, vr, length, value_offset, file_size, little, (rows, columns, bits, frames)
        )
    if tag != PIXEL_DATA:
        raise PixelDataError("float pixel data cannot be encapsulated")
    if length != _UNDEFINED:
        raise PixelDataError(
            f"transfer syntax {tsuid.name} is encapsulated but the pixel data has a defined length ({length})"
        )
    fragments, end = _index_fragments(fp, dataset, tsuid, value_offset, file_size, frames)
    return PixelIndex(tag, vr, True, frames, value_offset, end - value_offset, fragments=fragments)


def _index_native(
    ds: pydicom.Dataset,
    tag: int,
    vr: str,
    length: int,
    value_offset: int,
    file_size: int,
    little: bool,
    geometry: tuple[int, int, int, int],
) -> PixelIndex:
    rows, columns, bits, frames = geometry
    if length == _UNDEFINED:
        raise PixelDataError("native (uncompressed) pixel data has an undefined length")
    available = max(file_size - value_offset, 0)
    if length > available:
        raise PixelDataError(
            f"truncated: pixel data declares {length} bytes but the file ends after {available}"
        )
    if bits != 1 and (bits <= 0 or bits % 8):
        raise PixelDataError(f"unsupported BitsAllocated {bits} for native pixel data")
    samples = _int_attr(ds, "SamplesPerPixel", 1)
    if samples <= 0:
        raise PixelDataError(f"invalid SamplesPerPixel {samples}")
    frame_bits = rows * columns * samples * bits
    if samples == 3 and str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        frame_bits = frame_bits // 3 * 2  # native 4:2:2 stores two samples per pixel
    needed = (frame_bits * frames + 7) // 8
    if length < needed:
        raise PixelDataError(
            f"native pixel data value is {length} bytes but {rows} rows x {columns} columns x "
            f"{samples} samples x {bits} bits x {frames} frames need {needed}"
        )
    swap = 0
    if not little:
        # Big endian values must be swapped per word to serve little endian; 8/1-bit data
        # is only affected when it was written as 16-bit words (OW).
        if bits > 8:
            swap = bits // 8
        elif vr in ("OW", "OF", "OD"):
            swap = {"OW": 2, "OF": 4, "OD": 8}[vr]
        if swap not in (0, 2, 4, 8):
            raise PixelDataError(f"cannot byte swap {bits}-bit big endian pixel data")
    return PixelIndex(tag, vr, False, frames, value_offset, length, frame_bits=frame_bits, swap_bytes=swap)


def _index_fragments(
    fp: BinaryIO, ds: pydicom.Dataset, tsuid: UID, value_offset: int, file_size: int, frames: int
) -> tuple[tuple[tuple[tuple[int, int], ...], ...], int]:
    """Walk the items of encapsulated pixel data; return per-frame fragments and the end offset."""
    items: list[tuple[int, int]] = []
    pos = value_offset
    while True:
        fp.seek(pos)
        head = fp.read(8)
        if len(head) < 8:
            raise PixelDataError(
                f"truncated: missing sequence delimiter, the file ends at offset {pos} inside "
                f"encapsulated pixel data after {len(items)} items"
            )
        group, element, length = struct.unpack("<HHL", head)
        tag = group << 16 | element
        if tag == _SEQUENCE_DELIMITER:
            end = pos + 8
            break
        if tag != _ITEM:
            raise PixelDataError(
                f"unexpected tag ({group:04X},{element:04X}) at offset {pos} in encapsulated pixel data, "
                "expected an item or the sequence delimiter"
            )
        if length == _UNDEFINED:
            raise PixelDataError(f"fragment at offset {pos} has an undefined length")
        if pos + 8 + length > file_size:
            raise PixelDataError(
                f"truncated: fragment at offset {pos} declares {length} bytes but the file ends "
                f"after {max(file_size - pos - 8, 0)}"
            )
        items.append((pos + 8, length))
        pos += 8 + length
    if len(items) < 2:
        raise PixelDataError("encapsulated pixel data has no fragments")
    (bot_offset, bot_length), fragments = items[0], items[1:]
    if frames == 1:
        return (tuple(fragments),), end

    # BOT/EOT offsets count from the first byte of the first fragment's item tag.
    base = fragments[0][0] - 8
    index_of = {off - 8 - base: i for i, (off, _) in enumerate(fragments)}
    reasons: list[str] = []

    def by_offsets(name: str, offsets: list[int]) -> list[int] | None:
        starts = [index_of.get(o, -1) for o in offsets]
        if len(starts) != frames:
            reasons.append(f"{name} has {len(starts)} entries for {frames} frames")
        elif -1 in starts or starts[0] != 0 or any(a >= b for a, b in zip(starts, starts[1:], strict=False)):
            reasons.append(f"{name} offsets do not match fragment boundaries")
        else:
            return starts
        return None

    starts: list[int] | None = None
    eot = ds.get("ExtendedOffsetTable")
    if eot:
        starts = by_offsets("Extended Offset Table", [v for (v,) in struct.iter_unpack("<Q", _whole(eot, 8))])
    if starts is None and bot_length:
        fp.seek(bot_offset)
        bot = _whole(fp.read(bot_length), 4)
        starts = by_offsets("Basic Offset Table", [v for (v,) in struct.iter_unpack("<L", bot)])
    if starts is None and len(fragments) == frames:
        starts = list(range(frames))
    if starts is None and _jpeg_family(tsuid):
        marks = []
        for i, (off, length) in enumerate(fragments):
            fp.seek(off)
            first = fp.read(min(length, 4))
            if first.startswith(_JPEG_SOI) or first == _J2K_SOC_SIZ:
                marks.append(i)
        if len(marks) == frames and marks[0] == 0:
            starts = marks
        else:
            reasons.append(f"found {len(marks)} fragments starting with a JPEG/JPEG 2000 marker")
    if starts is None:
        raise PixelDataError(
            f"cannot map {len(fragments)} fragments to {frames} frames: "
            + ("; ".join(reasons) or "no offset table")
        )
    bounds = [*starts, len(fragments)]
    return tuple(tuple(fragments[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)), end


def _whole(raw: bytes, width: int) -> bytes:
    """Drop a malformed partial entry at the end of an offset table."""
    return bytes(raw[: len(raw) // width * width])


def _jpeg_family(tsuid: UID) -> bool:
    """True for syntaxes whose frames start with a recognisable marker (not RLE, not video)."""
    return (
        tsuid in JPEGTransferSyntaxes or tsuid in JPEGLSTransferSyntaxes or tsuid in JPEG2000TransferSyntaxes
    )


def _int_attr(ds: pydicom.Dataset, keyword: str, default: int | None = None) -> int:
    value: Any = ds.get(keyword)
    if value is None or value == "":
        if default is None:
            raise PixelDataError(f"{keyword} is missing from a dataset with pixel data")
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise PixelDataError(f"{keyword} is not a single integer: {value!r}") from exc


def read_frame(fp: BinaryIO, index: PixelIndex, n: int) -> bytes:
    """Return the bytes of 1-based frame ``n`` as DICOMweb serves them.

    Encapsulated: the frame's fragment values concatenated. Native: the frame in little
    endian; 1-bit frames are repacked so the first pixel is bit 0 of byte 0, with unused
    trailing bits zero. Reads one contiguous span of the file. Raises IndexError when ``n``
    is out of range and PixelDataError when the file is shorter than the index says.
    """
    index._check_frame(n)
    if index.encapsulated:
        fragments = index.fragments[n - 1]
        start = fragments[0][0]
        end = fragments[-1][0] + fragments[-1][1]
        data = _read_at(fp, start, end - start)
        if len(fragments) == 1:
            return data
        view = memoryview(data)
        # Fragments are contiguous but for the 8-byte item headers between them.
        return b"".join(view[off - start : off - start + length] for off, length in fragments)

    first_bit = (n - 1) * index.frame_bits
    first_byte, shift = divmod(first_bit, 8)
    end_byte = (first_bit + index.frame_bits + 7) // 8
    word = index.swap_bytes
    if word:
        # Swap whole words: widen the span to word boundaries, then cut the frame out.
        lo = first_byte - first_byte % word
        hi = -(-end_byte // word) * word
        data = _read_at(fp, index.value_offset + lo, min(hi, index.value_length) - lo)
        data = _swap(data.ljust(hi - lo, b"\0"), word)[first_byte - lo : end_byte - lo]
    else:
        data = _read_at(fp, index.value_offset + first_byte, end_byte - first_byte)
    if shift == 0 and index.frame_bits % 8 == 0:
        return data
    # 1-bit data whose frame boundary falls inside a byte: shift it down to bit 0.
    bits = int.from_bytes(data, "little") >> shift
    bits &= (1 << index.frame_bits) - 1
    return bits.to_bytes((index.frame_bits + 7) // 8, "little")


def _swap(data: bytes, word: int) -> bytes:
    code = next(c for c in "HILQ" if array(c).itemsize == word)
    values = array(code, data)
    values.byteswap()
    return values.tobytes()


def _read_at(fp: BinaryIO, offset: int, size: int) -> bytes:
    """Read exactly ``size`` bytes at ``offset``; pread on real files leaves fp's position alone."""
    # Only plain files: a BufferedRandom may hold unflushed writes that pread would miss.
    raw = fp.raw if isinstance(fp, io.BufferedReader) else fp
    if hasattr(os, "pread") and isinstance(raw, io.FileIO):
        fd = raw.fileno()
        chunks = []
        while size > 0:
            chunk = os.pread(fd, size, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
        data = b"".join(chunks)
    else:
        fp.seek(offset)
        data = fp.read(size)
        size -= len(data)
    if size > 0:
        raise PixelDataError(f"truncated: the stored file ends {size} bytes before the indexed frame does")
    return data
