"""STOW-RS (PS3.18 §10.5): store instances from a multipart/related body, streamed part by part."""

import contextlib
import os

from django.conf import settings

from core.errors import OkapiError
from core.streams import read_ahead
from imaging import storage
from imaging.dicomweb.common import dicomweb_root, json_response
from imaging.dicomweb.multipart import MultipartError, media_params, read_parts
from imaging.services.ingest import STATUS_ELEMENTS_DISCARDED, IngestResult, ingest_files


def _ref_item(result: IngestResult, base: str) -> dict:
    item = {
        "00081150": {"vr": "UI", "Value": [result.sop_class_uid]} if result.sop_class_uid else {"vr": "UI"},
        "00081155": {"vr": "UI", "Value": [result.sop_instance_uid]} if result.sop_instance_uid else {"vr": "UI"},
    }
    if result.ok:
        item["00081190"] = {"vr": "UR", "Value": [
            f"{base}/studies/{result.study_uid}/series/{result.series_uid}/instances/{result.sop_instance_uid}"]}
        if result.repairs:
            item["00081196"] = {"vr": "US", "Value": [STATUS_ELEMENTS_DISCARDED]}  # coerced: UIDs repaired
    else:
        item["00081197"] = {"vr": "US", "Value": [result.failure_code]}
        item["00000902"] = {"vr": "LO", "Value": [result.reason[:64]]}
    return item


def store_response(results: list[IngestResult], base: str, study_uid: str | None):
    """The Store Instances Response: 200 all stored, 202 some failed, 409 none stored."""
    stored = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    body = {}
    retrieve_study = study_uid or (stored[0].study_uid if stored and len({r.study_uid for r in stored}) == 1 else None)
    if retrieve_study:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{retrieve_study}"]}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [_ref_item(r, base) for r in stored]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": [_ref_item(r, base) for r in failed]}
    status = 200 if not failed else 202 if stored else 409
    # Full reasons, which the 64-character ErrorComment cannot hold, for people and scripts.
    reasons = "; ".join(f"{r.name or r.sop_instance_uid}: {r.reason}" for r in failed)
    headers = {"Warning": f'299 okapi "{reasons[:900]}"'} if failed else {}
    return json_response(body, status=status, headers=headers)


READ_AHEAD_PARTS = 4


def _discard_part(part) -> None:
    if part.path and os.path.exists(part.path):
        os.unlink(part.path)


def _body_stream(request):
    """The request body as a stream. Django's WSGI request reads nothing of a chunked body (it trusts
    Content-Length only), so such a body is read from the server's own input, which ends where the body does;
    its size is already bounded by config.limits."""
    if request.META.get("CONTENT_LENGTH"):
        return request
    return request.META["wsgi.input"] if "wsgi.input" in request.META else request


def stow(request, study_uid: str | None = None):
    """Store every application/dicom part; a bad part is listed as failed with its reason, the rest stored."""
    content_type = request.META.get("CONTENT_TYPE", "")
    main, params = media_params(content_type)
    if main != "multipart/related":
        raise OkapiError("unsupported_media_type", f"STOW-RS takes multipart/related; type=\"application/dicom\", "
                         f"not {main or 'a body without Content-Type'}", status=415)
    if params.get("type", "application/dicom").lower() not in {"application/dicom"}:
        raise OkapiError("unsupported_media_type", "only application/dicom parts are supported (no DICOM JSON + "
                         "bulk data STOW)", status=415)
    results: list[IngestResult] = []
    part_files: list[str] = []

    def dicom_parts():
        """Parts as they arrive; the ones that cannot be DICOM are answered at once."""
        parts = read_parts(_body_stream(request), content_type, temp_file=storage.temp_file,
                           max_part_bytes=settings.OKAPI_MAX_INSTANCE_BYTES)
        # The body is read and spooled a few parts ahead, in a thread, while this one indexes (and waits on
        # the database): the two overlap instead of taking turns.
        for index, part in enumerate(read_ahead(parts, depth=READ_AHEAD_PARTS, discard=_discard_part), start=1):
            name = f"part {index}"
            if part.path is None:
                results.append(IngestResult("rejected", name, reason=part.error, code="too_large"))
                continue
            part_files.append(part.path)
            if media_params(part.content_type)[0] not in {"application/dicom", "application/octet-stream"}:
                results.append(IngestResult("rejected", name, code="unsupported_media_type",
                                            reason=f"part of type {part.content_type}: only application/dicom"))
                continue
            yield part.path, name

    stored = ingest_files(dicom_parts(), user=request.okapi_user, source="stow-rs", consume=True,
                          expected_study_uid=study_uid, request=request)
    try:
        # closing: whatever happens, the read-ahead threads stop before the part files are cleaned up below
        with contextlib.closing(stored):
            for path, result in stored:
                results.append(result)
                if os.path.exists(path):
                    os.unlink(path)
    except MultipartError as exc:
        if not results:
            raise OkapiError("invalid_multipart", f"the body is not valid multipart/related: {exc}") from None
        results.append(IngestResult("rejected", f"part {len(results) + 1}", reason=str(exc), code="invalid_multipart"))
    finally:
        for path in part_files:  # parts not stored (rejected, or still being prepared when the body broke)
            if os.path.exists(path):
                os.unlink(path)
    if not results:
        raise OkapiError("empty", "the body holds no parts: nothing to store")
    return store_response(results, dicomweb_root(request), study_uid)
