"""REST endpoints of exports: request one (202 + job), list and describe versions, download an archive.

The download streams the stored zip in 1 MiB chunks (``imaging.storage.open_file``: pread on disk, ranged GETs
on S3), never the whole archive in memory, and honours ``Range`` (one byte range: 206 with
``Content-Range``; unsatisfiable: 416), ``If-Range`` and ``If-None-Match`` against the ``ETag``, which is the
export's content hash (an export never changes, so the tag is strong). Several ranges in one request are
answered with the whole archive (200), as RFC 9110 allows.
"""

import re

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.exports import selectors as export_selectors
from annotation.exports import services
from annotation.exports.serializers import ExportRequestSerializer, ExportSerializer
from annotation.selectors import get_project_for, require_role
from core.audit import audit_record
from core.errors import OkapiError
from core.serializers import JobSerializer
from imaging import storage

CHUNK = 1024 * 1024
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class ExportListView(APIView):
    """A project's export versions (leads and data scientists); POST starts a new export as a job."""

    parser_classes = [JSONParser]

    @extend_schema(responses=ExportSerializer(many=True))
    def get(self, request, project_id: int):
        project, roles = get_project_for(request.user, project_id)
        require_role(roles, *services.EXPORTERS, action="see its exports")
        return Response(ExportSerializer(export_selectors.exports_for(roles, project), many=True).data)

    @extend_schema(request=ExportRequestSerializer, responses={202: JobSerializer})
    def post(self, request, project_id: int):
        project, roles = get_project_for(request.user, project_id)
        if not isinstance(request.data, dict):
            raise OkapiError("invalid", "the export request is a JSON object")
        job = services.export_request(user=request.user, project=project, roles=roles, raw=dict(request.data))
        return Response(JobSerializer(job).data, status=202)


class ExportDetailView(APIView):
    @extend_schema(responses=ExportSerializer)
    def get(self, request, project_id: int, version: int):
        export, _ = export_selectors.get_export_for(request.user, project_id, version)
        return Response(ExportSerializer(export).data)


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single-range ``Range`` header; None to send everything; ValueError when it
    cannot be satisfied."""
    match = _RANGE_RE.match(header.strip().replace(" ", ""))
    if match is None:
        return None  # several ranges or another unit: answer with the whole archive
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0:
            raise ValueError("empty suffix range")
        return max(size - length, 0), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # not a valid range: ignored, as RFC 9110 says
    if start >= size:
        raise ValueError("range outside the archive")
    return start, min(int(last), size - 1) if last else size - 1


def _stream(key: str, start: int, end: int):
    with storage.open_file(key) as fh:
        fh.seek(start)
        remaining = end - start + 1
        while remaining > 0:
            chunk = fh.read(min(CHUNK, remaining))
            if not chunk:
                raise OSError(f"stored export {key} ended {remaining} bytes early")
            remaining -= len(chunk)
            yield chunk


class ExportDownloadView(APIView):
    """The export's zip archive, streamed; resumable with Range requests (``ETag`` = content hash)."""

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)  # zip out, JSON for errors

    @extend_schema(responses={(200, "application/zip"): OpenApiResponse(description="the archive"),
                              (206, "application/zip"): OpenApiResponse(description="a byte range of it")})
    def get(self, request, project_id: int, version: int):
        return self._answer(request, project_id, version, body=True)

    @extend_schema(exclude=True)
    def head(self, request, project_id: int, version: int):
        return self._answer(request, project_id, version, body=False)

    def _answer(self, request, project_id: int, version: int, *, body: bool):
        export, _ = export_selectors.get_export_for(request.user, project_id, version)
        etag = f'"{export.content_hash}"'
        headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "private, no-transform",
                   "Content-Disposition": f'attachment; filename="okapi-project{project_id}-v{version}.zip"',
                   "X-Content-SHA256": export.sha256}
        if etag in [t.strip() for t in request.META.get("HTTP_IF_NONE_MATCH", "").split(",")]:
            return HttpResponse(status=304, headers=headers)
        size, status, first, last = export.size, 200, 0, export.size - 1
        range_header = request.META.get("HTTP_RANGE", "")
        if_range = request.META.get("HTTP_IF_RANGE", "").strip()
        if range_header and (not if_range or if_range == etag):
            try:
                chosen = _byte_range(range_header, size)
            except ValueError:
                return HttpResponse(status=416, headers=headers | {"Content-Range": f"bytes */{size}"})
            if chosen is not None:
                (first, last), status = chosen, 206
                headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        headers["Content-Length"] = str(last - first + 1)
        if body:
            audit_record(user=request.user, action="export_download", object_type="export",
                         object_id=str(export.pk), request=request, defer=True,
                         detail={"project": project_id, "version": version, "range": [first, last]})
            response = StreamingHttpResponse(_stream(export.file, first, last), status=status,
                                             content_type="application/zip", headers=headers)
        else:
            response = HttpResponse(status=status, content_type="application/zip", headers=headers)
        return response
