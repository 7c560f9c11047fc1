"""WADO-RS views: metadata, instances, frames, bulk data, rendered images and thumbnails."""

import tempfile

import numpy as np
from django.http import HttpResponse, StreamingHttpResponse

from core.errors import NotFound, OkapiError
from imaging import selectors, storage
from imaging.dicom.pixels import PixelIndex, read_frame
from imaging.dicom.render import RenderError, parse_render_query, render_frame
from imaging.dicomweb.common import audit, dicomweb_view, server_root, text_response
from imaging.dicomweb.multipart import closing, frame_part, new_boundary
from imaging.dicomweb.negotiation import NotAcceptable, choose_frame_syntax, wants_single_part_dicom

# Frames and instance metadata never change for a SOP Instance UID; lists and series metadata do.
IMMUTABLE = "private, max-age=86400"


def _metadata_response(request, texts: list[str]):
    # Stored texts carry server-rooted BulkDataURIs; one replace makes them absolute for this request's host.
    body = "[" + ",".join(texts) + "]"
    body = body.replace('"BulkDataURI":"/dicomweb/', f'"BulkDataURI":"{server_root(request)}/dicomweb/')
    return text_response(body)


@dicomweb_view(("GET",))
def study_metadata(request, study_uid):
    texts = selectors.metadata_texts(request.okapi_user, study_uid=study_uid)
    audit(request, "retrieve_metadata", study_uid=study_uid, object_type="study", object_id=study_uid)
    return _metadata_response(request, texts)


@dicomweb_view(("GET",))
def series_metadata(request, study_uid, series_uid):
    texts = selectors.metadata_texts(request.okapi_user, study_uid=study_uid, series_uid=series_uid)
    audit(request, "retrieve_metadata", study_uid=study_uid, object_type="series", object_id=series_uid)
    return _metadata_response(request, texts)


@dicomweb_view(("GET",))
def instance_metadata(request, study_uid, series_uid, sop_uid):
    row = selectors.get_instance_for(request.okapi_user, study_uid, series_uid, sop_uid, fields=("metadata",))
    audit(request, "retrieve_metadata", study_uid=study_uid, object_type="instance", object_id=sop_uid)
    response = _metadata_response(request, [row["metadata"]])
    response["Cache-Control"] = IMMUTABLE
    return response


# --- frames ------------------------------------------------------------------------------------------------------


def _frame_numbers(text: str, count: int) -> list[int]:
    try:
        numbers = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise OkapiError("invalid_frame_list", f"frame list {text!r} must be comma-separated numbers") from None
    if not numbers:
        raise OkapiError("invalid_frame_list", "no frame number given")
    for n in numbers:
        if n < 1 or n > count:
            raise NotFound(f"frame {n} does not exist: the instance has {count} frame(s)")
    return numbers


def _native_frame(file: str, n: int, planar: bool) -> bytes:
    """Decode a compressed frame to native little-endian bytes (only when the client refuses the stored syntax)."""
    from pydicom.pixels import pixel_array

    with storage.open_file(file) as fh:
        array = pixel_array(fh, index=n - 1, raw=True)
    if array.ndim == 3 and planar:
        array = np.moveaxis(array, -1, 0)  # the metadata says colour-by-plane: send it so
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


@dicomweb_view(("GET",))
def frames(request, study_uid, series_uid, sop_uid, frame_list):
    source = selectors.get_frame_source_for(request.okapi_user, study_uid, series_uid, sop_uid)
    index = source.pixel_index
    if index is None:
        raise NotFound(f"instance {sop_uid} has no pixel data")
    numbers = _frame_numbers(frame_list, index.number_of_frames)
    choice = choose_frame_syntax(request.META.get("HTTP_ACCEPT"), source.transfer_syntax_uid)
    if choice.transcode:
        meta = selectors.get_instance_for(request.okapi_user, study_uid, series_uid, sop_uid, fields=("metadata",))
        planar = '"00280006":{"vr":"US","Value":[1]}' in meta["metadata"]
        data = [_native_frame(source.file, n, planar) for n in numbers]
    else:
        with storage.open_file(source.file) as fh:
            data = [read_frame(fh, index, n) for n in numbers]
    audit(request, "retrieve_frames", study_uid=study_uid, object_type="instance", object_id=sop_uid,
          frames=numbers if len(numbers) <= 16 else f"{len(numbers)} frames")
    part_type = f"application/octet-stream; transfer-syntax={choice.transfer_syntax}"
    if not choice.multipart:
        if len(data) != 1:
            raise NotAcceptable("several frames need a multipart/related answer")
        response = HttpResponse(data[0], content_type=part_type)
    else:
        boundary = new_boundary()
        body = b"".join(frame_part(d, boundary, part_type) for d in data) + closing(boundary)
        response = HttpResponse(
            body, content_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}')
    response["Cache-Control"] = IMMUTABLE
    return response


# --- instances (Part 10) -----------------------------------------------------------------------------------------


def _stream_files(keys: list[tuple[str, str]], boundary: str):
    """Each stored file as one application/dicom part, read in chunks (never a whole study in memory)."""
    for key, syntax in keys:
        yield (f"--{boundary}\r\nContent-Type: application/dicom; transfer-syntax={syntax}\r\n\r\n").encode()
        yield from storage.iter_file(key)
        yield b"\r\n"
    yield closing(boundary)


def _retrieve(request, rows: list[dict], *, study_uid: str, object_type: str, object_id: str):
    if not rows:
        raise NotFound(f"no {object_type} {object_id} that you may see")
    audit(request, "retrieve_instances", study_uid=study_uid, object_type=object_type, object_id=object_id,
          instances=len(rows))
    accept = request.META.get("HTTP_ACCEPT")
    if len(rows) == 1 and wants_single_part_dicom(accept):
        response = StreamingHttpResponse(storage.iter_file(rows[0]["file"]), content_type="application/dicom")
    else:
        boundary = new_boundary()
        response = StreamingHttpResponse(
            _stream_files([(r["file"], r["transfer_syntax_uid"]) for r in rows], boundary),
            content_type=f'multipart/related; type="application/dicom"; boundary={boundary}')
    return response


_FILE_FIELDS = ("file", "transfer_syntax_uid")


def retrieve_study_view(request, study_uid):
    """Retrieve every instance of a study (undecorated: the /studies/{S} route also takes STOW POSTs)."""
    selectors.get_study_for(request.okapi_user, study_uid)
    rows = list(selectors.instances_for(request.okapi_user).filter(series__study__study_uid=study_uid)
                .order_by("series_id", "instance_number", "id").values(*_FILE_FIELDS))
    return _retrieve(request, rows, study_uid=study_uid, object_type="study", object_id=study_uid)


retrieve_study = dicomweb_view(("GET",))(retrieve_study_view)


@dicomweb_view(("GET",))
def retrieve_series(request, study_uid, series_uid):
    series = selectors.get_series_for(request.okapi_user, study_uid, series_uid)
    rows = list(series.instances.order_by("instance_number", "id").values(*_FILE_FIELDS))
    return _retrieve(request, rows, study_uid=study_uid, object_type="series", object_id=series_uid)


@dicomweb_view(("GET",))
def retrieve_instance(request, study_uid, series_uid, sop_uid):
    row = selectors.get_instance_for(request.okapi_user, study_uid, series_uid, sop_uid, fields=_FILE_FIELDS)
    return _retrieve(request, [row], study_uid=study_uid, object_type="instance", object_id=sop_uid)


# --- bulk data ---------------------------------------------------------------------------------------------------


@dicomweb_view(("GET",))
def bulk(request, study_uid, series_uid, sop_uid, tag_path):
    """The value of a binary attribute named by its BulkDataURI (pixel data included)."""
    import pydicom

    row = selectors.get_instance_for(request.okapi_user, study_uid, series_uid, sop_uid,
                                     fields=("file", "pixel_index"))
    steps = [s for s in tag_path.split("/") if s]
    if row["pixel_index"] and len(steps) == 1 and steps[0].upper() == f"{PixelIndex.from_json(row['pixel_index']).tag:08X}":
        index = PixelIndex.from_json(row["pixel_index"])
        with storage.open_file(row["file"]) as fh:
            fh.seek(index.value_offset)
            value = fh.read(index.value_length)
    else:
        with storage.open_file(row["file"]) as fh:
            element = pydicom.dcmread(fh, stop_before_pixels=True)
            try:
                for i, step in enumerate(steps):
                    element = element[int(step, 16)] if i % 2 == 0 else element.value[int(step)]
                value = element.value
            except (KeyError, IndexError, ValueError, TypeError, AttributeError):  # a path into a non-sequence too
                raise NotFound(f"no bulk data at {tag_path}") from None
        if not isinstance(value, bytes | bytearray):
            raise NotFound(f"{tag_path} is not a binary attribute")
    audit(request, "retrieve_bulkdata", study_uid=study_uid, object_type="instance", object_id=sop_uid,
          tag_path=tag_path)
    accept = request.META.get("HTTP_ACCEPT") or ""
    if "multipart/related" not in accept:
        return HttpResponse(bytes(value), content_type="application/octet-stream")
    boundary = new_boundary()
    body = frame_part(bytes(value), boundary, "application/octet-stream") + closing(boundary)
    return HttpResponse(body, content_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}')


# --- rendered and thumbnails -------------------------------------------------------------------------------------


def _render(request, row: dict, frame: int, *, thumbnail: bool, study_uid: str, sop_uid: str):
    try:
        options = parse_render_query(request.GET, request.META.get("HTTP_ACCEPT"), thumbnail=thumbnail)
        path = storage.local_path(row["file"])
        if path is not None:
            image, media_type = render_frame(path, frame, options)
        else:
            with tempfile.NamedTemporaryFile(suffix=".dcm") as tmp:
                for chunk in storage.iter_file(row["file"]):
                    tmp.write(chunk)
                tmp.flush()
                image, media_type = render_frame(tmp.name, frame, options)
    except RenderError as exc:
        code = "not_acceptable" if "media type" in str(exc) else "cannot_render"
        raise OkapiError(code, str(exc), status=406 if code == "not_acceptable" else 400) from None
    audit(request, "retrieve_rendered", study_uid=study_uid, object_type="instance", object_id=sop_uid,
          frame=frame, thumbnail=thumbnail)
    response = HttpResponse(image, content_type=media_type)
    response["Cache-Control"] = IMMUTABLE
    return response


def _middle_instance(request, study_uid: str, series_uid: str | None) -> dict:
    qs = selectors.instances_for(request.okapi_user).filter(series__study__study_uid=study_uid,
                                                            number_of_frames__gt=0)
    if series_uid:
        qs = qs.filter(series__series_uid=series_uid)
    else:
        qs = qs.order_by("series__series_number", "series_id")
        first = qs.values("series_id").first()
        qs = qs.filter(series_id=first["series_id"]) if first else qs
    rows = list(qs.order_by("instance_number", "id").values("file", "sop_uid", "number_of_frames"))
    if not rows:
        raise NotFound("nothing with pixel data to render there")
    return rows[len(rows) // 2]


@dicomweb_view(("GET",))
def rendered(request, study_uid, series_uid=None, sop_uid=None, frame=None):
    return _level_image(request, study_uid, series_uid, sop_uid, frame, thumbnail=False)


@dicomweb_view(("GET",))
def thumbnail(request, study_uid, series_uid=None, sop_uid=None, frame=None):
    return _level_image(request, study_uid, series_uid, sop_uid, frame, thumbnail=True)


def _level_image(request, study_uid, series_uid, sop_uid, frame, *, thumbnail: bool):
    if sop_uid is None:
        row = _middle_instance(request, study_uid, series_uid)
        frame_number = (row["number_of_frames"] + 1) // 2
    else:
        row = selectors.get_instance_for(request.okapi_user, study_uid, series_uid, sop_uid,
                                         fields=("file", "sop_uid", "number_of_frames"))
        frame_number = int(frame) if frame else 1
        if row["number_of_frames"] == 0:
            raise NotFound(f"instance {sop_uid} has no pixel data to render")
        if not 1 <= frame_number <= row["number_of_frames"]:
            raise NotFound(f"frame {frame_number} does not exist: the instance has {row['number_of_frames']}")
    return _render(request, row, frame_number, thumbnail=thumbnail, study_uid=study_uid, sop_uid=row["sop_uid"])


