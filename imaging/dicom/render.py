"""DICOMweb rendered and thumbnail resources (PS3.18 §8.3.5, §9.5).

Turns one frame of a stored DICOM instance into a consumer image (JPEG or PNG):
decode the frame with pydicom, apply the Modality LUT (rescale), then the VOI
(window or VOI LUT), invert MONOCHROME1, expand palette colour, show SEG frames as
a visible mask, scale to the viewport and encode. Pure Python; no Django here.
"""

from __future__ import annotations

import io
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, pixel_array
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

__all__ = ["RenderError", "RenderOptions", "fit_viewport", "parse_render_query", "render_frame"]

THUMBNAIL_VIEWPORT = (128, 128)
_MEDIA_TYPES = {
    "image/jpeg": "image/jpeg",
    "image/png": "image/png",
    "image/*": "image/jpeg",
    "*/*": "image/jpeg",
}
_WINDOW_FUNCTIONS = {"linear": "linear", "linear_exact": "linear_exact", "sigmoid": "sigmoid"}


class RenderError(ValueError):
    """The frame cannot be rendered as asked; the message is the reason, fit for an HTTP 4xx body.

    E.g. ``instance has no pixel data (SR document)`` or ``unsupported media type image/gif``.
    """


@dataclass(frozen=True)
class RenderOptions:
    """How to render: output media type, viewport (width, height), VOI window override, JPEG quality."""

    media_type: str = "image/jpeg"
    viewport: tuple[int, int] | None = None
    window: tuple[float, float, str] | None = None
    quality: int = 90


def _negotiate(accept: str) -> str:
    """Pick the best supported media type from an Accept-style list (q-values honoured, q=0 refused)."""
    ranges: list[tuple[float, int, str]] = []
    for pos, part in enumerate(accept.split(",")):
        mtype, *params = (p.strip() for p in part.split(";"))
        if not mtype:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    raise RenderError(f"malformed quality value in accept: {part.strip()!r}") from None
        ranges.append((-q, pos, mtype.lower()))
    for neg_q, _, mtype in sorted(ranges):
        if neg_q < 0 and mtype in _MEDIA_TYPES:
            return _MEDIA_TYPES[mtype]
    wanted = ", ".join(m for _, _, m in ranges) or "(none)"
    raise RenderError(f"unsupported media type {wanted}")


def _parse_viewport(text: str) -> tuple[int, int]:
    """'vw,vh' (or the full 'vw,vh,sx,sy,sw,sh', of which only vw and vh are used) -> (vw, vh)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 6):
        raise RenderError(f"malformed viewport {text!r}: expected 'width,height'")
    try:
        width, height = int(parts[0]), int(parts[1])
    except ValueError:
        raise RenderError(f"malformed viewport {text!r}: width and height must be integers") from None
    if not (0 < width <= 8192 and 0 < height <= 8192):
        raise RenderError(f"malformed viewport {text!r}: width and height must be in 1..8192")
    return width, height


def _parse_window(text: str) -> tuple[float, float, str]:
    """'center,width[,function]' -> (center, width, 'linear'|'linear_exact'|'sigmoid')."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise RenderError(f"malformed window {text!r}: expected 'center,width,function'")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise RenderError(f"malformed window {text!r}: center and width must be numbers") from None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
        raise RenderError(f"malformed window {text!r}: width must be a positive number")
    name = parts[2].lower().replace("-", "_") if len(parts) == 3 and parts[2] else "linear"
    if name not in _WINDOW_FUNCTIONS:
        raise RenderError(f"unsupported window function {parts[2]!r}: use linear, linear_exact or sigmoid")
    return center, width, _WINDOW_FUNCTIONS[name]


def parse_render_query(
    params: Mapping[str, str], accept_header: str | None, *, thumbnail: bool
) -> RenderOptions:
    """Build RenderOptions from DICOMweb query parameters and the Accept header.

    ``accept`` (query) beats the Accept header; neither -> JPEG. ``viewport`` is 'w,h' (a full
    'vw,vh,sx,sy,sw,sh' is tolerated, the source rectangle ignored); thumbnails default to 128x128.
    ``window`` is 'center,width,function'; ``quality`` 1..100. Other parameters are ignored.
    Raises RenderError on malformed values or unsupported media types.
    """
    accept = params.get("accept") or accept_header or ""
    media_type = _negotiate(accept) if accept.strip() else "image/jpeg"
    viewport = _parse_viewport(params["viewport"]) if params.get("viewport") else None
    if viewport is None and thumbnail:
        viewport = THUMBNAIL_VIEWPORT
    window = _parse_window(params["window"]) if params.get("window") else None
    quality = 90
    if params.get("quality"):
        try:
            quality = int(params["quality"])
        except ValueError:
            raise RenderError(f"malformed quality {params['quality']!r}: expected an integer") from None
        if not 1 <= quality <= 100:
            raise RenderError(f"quality {quality} out of range 1..100")
    return RenderOptions(media_type=media_type, viewport=viewport, window=window, quality=quality)


def fit_viewport(width: int, height: int, viewport: tuple[int, int] | None) -> tuple[int, int]:
    """Size of a width x height image scaled to fit inside viewport, keeping its aspect ratio."""
    if viewport is None:
        return width, height
    scale = min(viewport[0] / width, viewport[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _first(value: Any) -> float | None:
    """First value of a possibly multi-valued numeric element, or None when absent/empty."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    return float(value)


def _frame_value(ds: Dataset, index: int, sequence: str, keyword: str) -> Any:
    """Attribute for frame `index`: per-frame functional group, then shared group, then top level."""
    for groups_kw, item in (
        ("PerFrameFunctionalGroupsSequence", index),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(groups_kw)
        if groups and len(groups) > item:
            seq = groups[item].get(sequence)
            if seq and keyword in seq[0]:
                return seq[0][keyword].value
    return ds.get(keyword)


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """VOI window (PS3.3 C.11.2.1.2) to the output range 0..255, as float."""
    if function == "sigmoid":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "linear_exact":
        low, span = center - width / 2, width
    else:  # linear: the DICOM definition with its half-pixel offsets
        low, span = center - 0.5 - (width - 1) / 2, width - 1
    if span <= 0:
        return np.where(values > low, 255.0, 0.0)
    return np.clip((values - low) / span, 0.0, 1.0) * 255.0


def _grey(arr: np.ndarray, ds: Dataset, index: int, options: RenderOptions) -> np.ndarray:
    """Modality LUT, then VOI (options.window > file window > file VOI LUT > frame min/max) -> 0..255."""
    if "ModalityLUTSequence" in ds:
        values = apply_modality_lut(arr, ds).astype(np.float64)
    else:
        values = arr.astype(np.float64)
        slope = _first(_frame_value(ds, index, "PixelValueTransformationSequence", "RescaleSlope"))
        intercept = _first(_frame_value(ds, index, "PixelValueTransformationSequence", "RescaleIntercept"))
        if slope is not None or intercept is not None:
            values = values * (1.0 if slope is None else slope) + (intercept or 0.0)
    values = np.nan_to_num(values)
    window = options.window
    if window is None:
        center = _first(_frame_value(ds, index, "FrameVOILUTSequence", "WindowCenter"))
        width = _first(_frame_value(ds, index, "FrameVOILUTSequence", "WindowWidth"))
        function = str(_frame_value(ds, index, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR")
        if center is not None and width is not None and width > 0:
            window = (center, width, _WINDOW_FUNCTIONS.get(function.lower(), "linear"))
    if window is not None:
        out = _window(values, *window)
    elif ds.get("VOILUTSequence"):  # scale by the bits the LUT really uses (descriptors often overstate)
        entries, first = (
            int(ds.VOILUTSequence[0].LUTDescriptor[0]) or 65536,
            ds.VOILUTSequence[0].LUTDescriptor[1],
        )
        top = int(apply_voi(np.arange(first, first + entries), ds).max()) or 1
        out = apply_voi(np.rint(values).astype(np.int64), ds) * (255.0 / (2 ** top.bit_length() - 1))
    else:
        low, high = float(values.min()), float(values.max())
        out = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        out = 255.0 - out
    return out


def _to_uint8(values: np.ndarray, max_value: float) -> np.ndarray:
    """Scale 0..max_value to 0..255 uint8 (no-op for uint8 with max 255)."""
    if values.dtype == np.uint8 and max_value == 255:
        return values
    return np.clip(np.rint(values.astype(np.float64) * (255.0 / max_value)), 0, 255).astype(np.uint8)


def _display(arr: np.ndarray, ds: Dataset, index: int, options: RenderOptions) -> np.ndarray:
    """Decoded frame -> uint8 (rows, cols) grey or (rows, cols, 3) RGB ready for PIL."""
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)  # 16-bit LUTs holding 8-bit values are common: scale by use
        return _to_uint8(rgb, 255 if rgb.dtype == np.uint8 or rgb.max() <= 255 else 65535)
    if arr.ndim == 3:  # RGB (YBR already converted by pydicom)
        if arr.shape[2] != 3:
            raise RenderError(f"unsupported samples per pixel {arr.shape[2]}")
        return _to_uint8(arr, 2 ** int(ds.get("BitsStored") or 8) - 1)
    seg_type = str(ds.get("SegmentationType", "")) if ds.get("Modality") == "SEG" else ""
    if seg_type == "BINARY":
        return _to_uint8(arr > 0, 1)
    if seg_type == "FRACTIONAL":
        return _to_uint8(arr, float(ds.get("MaximumFractionalValue") or 255))
    if seg_type == "LABELMAP":
        labels = [int(s.SegmentNumber) for s in ds.get("SegmentSequence", []) if "SegmentNumber" in s]
        return _to_uint8(arr, max(labels + [int(arr.max()), 1]))
    return np.rint(_grey(arr, ds, index, options)).astype(np.uint8)


def _no_pixel_kind(ds: Dataset) -> str:
    """Short description of an instance without pixel data, e.g. 'SR document'."""
    modality = str(ds.get("Modality", "") or "")
    if modality == "SR":
        return "SR document"
    sop = ds.get("SOPClassUID") or getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", None)
    name = getattr(sop, "name", "") if sop else ""
    return name or modality or "unknown object"


def _check_complete(f: BinaryIO, ds: Dataset, tsyntax: UID) -> None:
    """Walk the pixel data element header and fragments (seeks only); raise if the file is cut short.

    Decoders tolerate some truncated codestreams (JPEG-LS decodes half a frame silently), so check here.
    `f` must be positioned at the pixel data element, as dcmread(stop_before_pixels=True) leaves it.
    """
    start, size = f.tell(), f.seek(0, os.SEEK_END)
    f.seek(start)
    header_size = 8 if tsyntax.is_implicit_VR else 12  # tag, (VR, reserved,) 32-bit length
    header = f.read(header_size)
    if not header:
        raise RenderError(f"instance has no pixel data ({_no_pixel_kind(ds)})")
    truncated = RenderError("file is truncated or corrupt in the pixel data")
    if len(header) < header_size:
        raise truncated
    (length,) = struct.unpack("<L" if tsyntax.is_little_endian else ">L", header[-4:])
    if length != 0xFFFFFFFF:  # native
        if f.tell() + length > size:
            raise truncated
        return
    while True:  # encapsulated: items (FFFE,E000) until the sequence delimiter (FFFE,E0DD)
        item = f.read(8)
        if len(item) < 8:
            raise truncated
        group, element, length = struct.unpack("<HHL", item)
        if (group, element) == (0xFFFE, 0xE0DD):
            return
        if (group, element) != (0xFFFE, 0xE000) or f.tell() + length > size:
            raise truncated
        f.seek(length, os.SEEK_CUR)


def _decode(f: BinaryIO, frame: int) -> tuple[Dataset, np.ndarray]:
    """Read the header and decode frame `frame` (1-based) from an open binary file."""
    try:
        ds = dcmread(f, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise RenderError(f"cannot read DICOM file: {exc}") from exc
    if not ds.get("Rows") or not ds.get("Columns") or not ds.get("BitsAllocated"):
        raise RenderError(f"instance has no pixel data ({_no_pixel_kind(ds)})")
    frames = int(ds.get("NumberOfFrames") or 1)
    if not 1 <= frame <= frames:
        raise RenderError(f"frame {frame} out of range 1..{frames}")
    tsyntax = UID(getattr(ds.get("file_meta"), "TransferSyntaxUID", "") or "")
    if not tsyntax.is_transfer_syntax:
        raise RenderError(f"unknown transfer syntax {tsyntax or '(none)'}")
    if tsyntax != DeflatedExplicitVRLittleEndian:  # deflated: pydicom inflates in memory, no positions
        _check_complete(f, ds, tsyntax)
    try:
        f.seek(0)
        source = dcmread(f) if tsyntax == DeflatedExplicitVRLittleEndian else f
        return ds, pixel_array(source, index=frame - 1)
    except Exception as exc:  # truncated/corrupt data, missing codec...
        raise RenderError(f"cannot decode frame {frame}: {exc}") from exc


def render_frame(path: str | os.PathLike | BinaryIO, frame: int, options: RenderOptions) -> tuple[bytes, str]:
    """Render 1-based frame `frame` of the DICOM instance at `path` (or an open binary file).

    Returns (image bytes, media type). Raises RenderError when the instance has no pixel data,
    the frame does not exist, the file cannot be decoded, or the options are not supported.
    A missing or unreadable path raises the usual OSError (a server fault, not a client one).
    """
    media_type = _MEDIA_TYPES.get(options.media_type.lower())
    if media_type is None:
        raise RenderError(f"unsupported media type {options.media_type}")
    if not 1 <= options.quality <= 100:
        raise RenderError(f"quality {options.quality} out of range 1..100")
    if options.window and (not options.window[1] > 0 or options.window[2] not in _WINDOW_FUNCTIONS):
        raise RenderError(f"invalid window {options.window}: width > 0, function linear|linear_exact|sigmoid")
    if hasattr(path, "read"):
        ds, arr = _decode(path, frame)  # type: ignore[arg-type]
    else:
        with open(path, "rb") as f:
            ds, arr = _decode(f, frame)
    pixels = _display(arr, ds, frame - 1, options)
    image = Image.fromarray(pixels)  # uint8 2-D -> "L", (rows, cols, 3) -> "RGB"
    size = fit_viewport(image.width, image.height, options.viewport)
    if size != image.size:
        is_mask = ds.get("Modality") == "SEG"
        image = image.resize(size, Image.Resampling.NEAREST if is_mask else Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if media_type == "image/png":
        image.save(out, format="PNG")
    else:
        image.save(out, format="JPEG", quality=options.quality)
    return out.getvalue(), media_type
