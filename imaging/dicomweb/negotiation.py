"""Accept-header negotiation for WADO-RS frames and instances (PS3.18 §8.7)."""

from dataclasses import dataclass

from core.errors import OkapiError
from imaging.dicom.instance import EXPLICIT_VR_LITTLE_ENDIAN, NATIVE_SYNTAXES
from imaging.dicomweb.multipart import media_params

# Media types OHIF and PS3.18 associate with compressed syntaxes (single-part and multipart `type=`).
MEDIA_FOR_SYNTAX = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc", "1.2.840.10008.1.2.5": "image/dicom-rle",
}


@dataclass(frozen=True)
class FrameChoice:
    transfer_syntax: str  # what the parts carry
    transcode: bool       # decode the stored compressed frame to native little endian
    multipart: bool


def _ranges(accept: str):
    for item in filter(None, (part.strip() for part in accept.split(","))):
        main, params = media_params(item)
        yield main, params


class NotAcceptable(OkapiError):
    status = 406

    def __init__(self, message: str):
        super().__init__("not_acceptable", message)


def choose_frame_syntax(accept: str | None, stored: str) -> FrameChoice:
    """Pick how to send frames stored in ``stored`` for this Accept header.

    transfer-syntax=* (OHIF's default) gets the stored syntax; application/octet-stream without a syntax, or
    with Explicit VR Little Endian, gets native bytes (decoded if need be, as the standard requires); a
    compressed media type gets the stored bytes when its syntax matches.
    """
    served_native = stored in NATIVE_SYNTAXES
    for main, params in _ranges(accept or "*/*"):
        multipart = main == "multipart/related"
        media = params.get("type", "application/octet-stream").lower() if multipart else main
        syntax = params.get("transfer-syntax")
        if media in {"*/*", "multipart/*"} or main == "*/*":
            return FrameChoice(EXPLICIT_VR_LITTLE_ENDIAN if served_native else stored, False, True)
        if media == "application/octet-stream":
            if syntax == "*":
                return FrameChoice(EXPLICIT_VR_LITTLE_ENDIAN if served_native else stored, False, multipart)
            if syntax in (None, EXPLICIT_VR_LITTLE_ENDIAN):
                return FrameChoice(EXPLICIT_VR_LITTLE_ENDIAN, not served_native, multipart)
            if syntax == stored:
                return FrameChoice(stored, False, multipart)
            continue
        if MEDIA_FOR_SYNTAX.get(stored) == media and syntax in (None, "*", stored):
            return FrameChoice(stored, False, multipart)
    raise NotAcceptable(f"frames are stored as {stored}; this server sends them as stored "
                        f"(transfer-syntax=*) or as native Explicit VR Little Endian, not as asked ({accept})")


def wants_single_part_dicom(accept: str | None) -> bool:
    """True when the client asks for a bare application/dicom body (not multipart) for one instance."""
    for main, _params in _ranges(accept or ""):
        if main == "application/dicom":
            return True
        if main in {"multipart/related", "*/*"}:
            return False
    return False
