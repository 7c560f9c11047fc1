"""REST endpoints of campaigns. Thin: parse, fetch through a selector (404 for what you may not see), check
the project role, call one service, serialize."""

import os
import tempfile

import numpy as np
from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors
from annotation import serializers as s
from annotation.models import Assignment, ClaimState, LabelSchema, Membership, ProjectRole, Read, ReadVersion
from annotation.progress import adjudication_queue, project_agreement, project_progress
from annotation.selectors import SEE_ALL_READS, require_role
from annotation.services import claims, consensus, masks, projects, reads
from core.errors import NotFound, OkapiError
from core.models import User

LEAD = ProjectRole.LEAD
OVERSEE = (ProjectRole.LEAD, ProjectRole.ADJUDICATOR, ProjectRole.DATA_SCIENTIST)
MAX_MASK_UPLOAD_BYTES = 512 * 1024 * 1024


def _valid(serializer_class, data):
    ser = serializer_class(data=data)
    if not ser.is_valid():
        raise OkapiError("invalid", "the request is not valid", detail=ser.errors)
    return ser.validated_data


def _project_context(user, project_list) -> dict:
    ids = [p.pk for p in project_list]
    roles = selectors.roles_by_project(user, ids)
    versions = {}
    for pid, version in LabelSchema.objects.filter(project_id__in=ids).values_list("project_id", "version"):
        versions[pid] = max(version, versions.get(pid, 0))
    return {"roles": roles, "schema_versions": versions}


class ProjectListView(APIView):
    """Projects you are a member of; project leads and admins create them (the creator becomes lead)."""

    @extend_schema(responses=s.ProjectSerializer(many=True))
    def get(self, request):
        items = list(selectors.projects_for(request.user))
        return Response(s.ProjectSerializer(items, many=True, context=_project_context(request.user, items)).data)

    @extend_schema(request=s.ProjectCreateSerializer, responses={201: s.ProjectSerializer})
    def post(self, request):
        data = _valid(s.ProjectCreateSerializer, request.data)
        project = projects.project_create(user=request.user, **data)
        return Response(s.ProjectSerializer(project, context=_project_context(request.user, [project])).data,
                        status=201)


class ProjectDetailView(APIView):
    @extend_schema(responses=s.ProjectSerializer)
    def get(self, request, project_id: int):
        project, _ = selectors.get_project_for(request.user, project_id)
        return Response(s.ProjectSerializer(project, context=_project_context(request.user, [project])).data)

    @extend_schema(request=s.ProjectUpdateSerializer, responses=s.ProjectSerializer)
    def patch(self, request, project_id: int):
        project, roles = selectors.get_project_for(request.user, project_id)
        require_role(roles, LEAD, action="change its settings")
        data = _valid(s.ProjectUpdateSerializer, request.data)
        project = projects.project_update(project=project, user=request.user, **data)
        return Response(s.ProjectSerializer(project, context=_project_context(request.user, [project])).data)


class MemberListView(APIView):
    @extend_schema(responses=s.MembershipSerializer(many=True))
    def get(self, request, project_id: int):
        project, _ = selectors.get_project_for(request.user, project_id)
        items = Membership.objects.filter(project=project).select_related("user").order_by("role", "user__username")
        return Response(s.MembershipSerializer(items, many=True).data)

    @extend_schema(request=s.MemberAddSerializer, responses={201: s.MembershipSerializer})
    def post(self, request, project_id: int):
        project, roles = selectors.get_project_for(request.user, project_id)
        require_role(roles, LEAD, action="add members")
        data = _valid(s.MemberAddSerializer, request.data)
        member = User.objects.filter(username=data["username"], is_active=True).first()
        if member is None:
            raise OkapiError("invalid", f"no active user {data['username']}", detail={"username": data["username"]})
        membership = projects.member_add(project=project, user=request.user, member=member, role=data["role"])
        return Response(s.MembershipSerializer(membership).data, status=201)


class MemberDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, project_id: int, membership_id: int):
        project, roles = selectors.get_project_for(request.user, project_id)
        require_role(roles, LEAD, action="remove members")
        membership = Membership.objects.filter(project=project, pk=membership_id).select_related("user").first()
        if membership is None:
            raise NotFound(f"no membership {membership_id} in this project")
        projects.member_remove(project=project, user=request.user, membership=membership)
        return Response(status=204)


class SchemaView(APIView):
    """The project's current label schema; a lead publishes a new version (reads keep theirs)."""

    @extend_schema(responses=s.SchemaSerializer)
    def get(self, request, project_id: int):
        project, _ = selectors.get_project_for(request.user, project_id)
        schema = projects.current_schema(project)
        if schema is None:
            raise NotFound("this project has no label schema yet")
        return Response(s.SchemaSerializer(schema).data)

    @extend_schema(request=s.SchemaPublishSerializer, responses={201: s.SchemaSerializer})
    def post(self, request, project_id: int):
        project, roles = selectors.get_project_for(request.user, project_id)
        require_role(roles, LEAD, action="change its label schema")
        data = _valid(s.SchemaPublishSerializer, request.data)
        schema = projects.schema_publish(project=project, user=request.user, definition=data["definition"])
        return Response(s.SchemaSerializer(schema).data, status=201)


class SchemaVersionsView(APIView):
    @extend_schema(responses=s.SchemaSerializer(many=True))
    def get(self, request, project_id: int):
        project, _ = selectors.get_project_for(request.user, project_id)
        items = LabelSchema.objects.filter(project=project).select_related("created_by").order_by("-version")
        return Response(s.SchemaSerializer(items, many=True).data)


class CaseListView(APIView):
    """A project's cases in reading order (a reader sees only the cases assigned to them)."""

    @extend_schema(parameters=[OpenApiParameter("state", str, enum=["open", "adjudication", "consensus"])],
                   responses=s.CaseSerializer(many=True))
    def get(self, request, project_id: int):
        project, roles = selectors.get_project_for(request.user, project_id)
        qs = selectors.cases_for(request.user, project, roles).select_related("study", "series")
        if request.query_params.get("state"):
            qs = qs.filter(state=request.query_params["state"])
        see_all = bool(roles & set(OVERSEE))
        return Response(s.CaseSerializer(qs.order_by("priority", "id")[:5000], many=True,
                                         context={"see_all": see_all}).data)

    @extend_schema(request=s.CasesAddSerializer, responses={201: s.CasesAddedSerializer})
    def post(self, request, project_id: int):
        project, roles = selectors.get_project_for(request.user, project_id)
        require_role(roles, LEAD, action="add cases")
        data = _valid(s.CasesAddSerializer, request.data)
        return Response(projects.cases_add(project=project, user=request.user, **data), status=201)


class NextCaseView(APIView):
    """Claim the highest-ranked case that still needs your read (204 when none is left)."""

    @extend_schema(request=None, responses={200: s.AssignmentSerializer, 204: None})
    def post(self, request, project_id: int):
        project, roles = selectors.get_project_for(request.user, project_id)
        assignment = claims.case_claim_next(project=project, reader=request.user, roles=roles)
        if assignment is None:
            return Response(status=204)
        return Response(s.AssignmentSerializer(assignment).data)


class AssignView(APIView):
    """A lead assigns a case to a reader by hand."""

    @extend_schema(request=s.AssignSerializer, responses={201: s.AssignmentSerializer})
    def post(self, request, project_id: int):
        project, roles = selectors.get_project_for(request.user, project_id)
        require_role(roles, LEAD, action="assign cases")
        data = _valid(s.AssignSerializer, request.data)
        case = project.cases.filter(pk=data["case"]).first()
        if case is None:
            raise NotFound(f"no case {data['case']} in this project")
        reader = User.objects.filter(username=data["reader"]).first()
        if reader is None:
            raise OkapiError("invalid", f"no user {data['reader']}", detail={"reader": data["reader"]})
        assignment = claims.case_assign(case=case, reader=reader, lead=request.user)
        assignment = Assignment.objects.select_related("case__study", "case__series", "case__project",
                                                       "reader").get(pk=assignment.pk)
        return Response(s.AssignmentSerializer(assignment).data, status=201)


class MyAssignmentsView(APIView):
    """Your worklist: open claims and assignments in every project."""

    @extend_schema(responses=s.AssignmentSerializer(many=True))
    def get(self, request):
        qs = (Assignment.objects.filter(claims.active_slot_q(timezone.now()), reader=request.user,
                                        state=ClaimState.CLAIMED)
              .select_related("case__study", "case__series", "case__project", "reader")
              .order_by("case__project_id", "case__priority"))
        return Response(s.AssignmentSerializer(qs, many=True).data)


class ProgressView(APIView):
    @extend_schema(responses=s.ProgressSerializer)
    def get(self, request, project_id: int):
        project, roles = selectors.get_project_for(request.user, project_id)
        require_role(roles, *OVERSEE, action="see its progress")
        return Response(project_progress(project))


class AgreementView(APIView):
    @extend_schema(responses=s.AgreementSerializer)
    def get(self, request, project_id: int):
        project, roles = selectors.get_project_for(request.user, project_id)
        require_role(roles, *OVERSEE, action="see its agreement statistics")
        return Response(project_agreement(project))


class AdjudicationQueueView(APIView):
    @extend_schema(responses=s.CaseSerializer(many=True))
    def get(self, request, project_id: int):
        project, roles = selectors.get_project_for(request.user, project_id)
        require_role(roles, *SEE_ALL_READS, action="see cases waiting for adjudication")
        qs = adjudication_queue(project).select_related("study", "series")
        return Response(s.CaseSerializer(qs, many=True, context={"see_all": True}).data)


class CaseDetailView(APIView):
    @extend_schema(responses=s.CaseSerializer)
    def get(self, request, case_id: int):
        case, roles = selectors.get_case_for(request.user, case_id)
        return Response(s.CaseSerializer(case, context={"see_all": bool(roles & set(OVERSEE))}).data)


class CaseReadsView(APIView):
    """Reads of a case you may see: your own; all of them for leads and adjudicators."""

    @extend_schema(responses=s.ReadSerializer(many=True))
    def get(self, request, case_id: int):
        case, roles = selectors.get_case_for(request.user, case_id)
        qs = selectors.reads_visible(request.user, case, roles).select_related(
            "schema", "segmentation__series__study").order_by("id")
        return Response(s.ReadSerializer(qs, many=True).data)


class MyReadView(APIView):
    """Your read of a case: fetch it, save a draft, or submit (each save is a new version)."""

    parser_classes = [JSONParser]

    @extend_schema(responses=s.ReadSerializer)
    def get(self, request, case_id: int):
        case, _ = selectors.get_case_for(request.user, case_id)
        read = Read.objects.filter(case=case, reader=request.user).select_related("schema").first()
        if read is None:
            raise NotFound("you have not saved a read of this case yet")
        return Response(s.ReadSerializer(read).data)

    @extend_schema(request=s.ReadSaveSerializer, responses={201: s.ReadSerializer})
    def post(self, request, case_id: int):
        case, _ = selectors.get_case_for(request.user, case_id)
        data = _valid(s.ReadSaveSerializer, request.data)
        version = reads.read_save(case=case, reader=request.user, **data)
        return Response(s.ReadSerializer(version.read).data, status=201)


class SegmentationUploadView(APIView):
    """Attach a segmentation to your read: a DICOM SEG file, or an .npz of binary masks named by the schema's
    segmentation labels (stored as DICOM SEG through highdicom). Makes a new read version."""

    parser_classes = [MultiPartParser]

    @extend_schema(request={"multipart/form-data": s.SegmentationUploadSerializer}, responses={201: s.ReadSerializer})
    def post(self, request, case_id: int):
        case, _ = selectors.get_case_for(request.user, case_id)
        data = _valid(s.SegmentationUploadSerializer, request.data)
        upload = data["file"]
        common = {"case": case, "reader": request.user, "base_version": data["base_version"],
                  "submit": data["submit"]}
        if upload.name.lower().endswith(".npz"):
            version = masks.read_segmentation_save(**common, masks=_load_npz(upload),
                                                   series_uid=data.get("series_uid"))
        elif hasattr(upload, "temporary_file_path"):
            version = masks.read_segmentation_save(**common, seg_path=upload.temporary_file_path())
        else:  # a small upload held in memory: ingest reads files
            path = _spool(upload)
            try:
                version = masks.read_segmentation_save(**common, seg_path=path)
            finally:
                if os.path.exists(path):
                    os.unlink(path)
        return Response(s.ReadSerializer(version.read).data, status=201)


def _load_npz(upload) -> dict[str, np.ndarray]:
    if upload.size > MAX_MASK_UPLOAD_BYTES:
        raise OkapiError("too_large", f"mask uploads are limited to {MAX_MASK_UPLOAD_BYTES} bytes", status=413)
    try:
        with np.load(upload, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - any failure to read is the upload's fault
        raise OkapiError("invalid_segmentation", f"not a readable .npz of masks: {exc}") from None


def _spool(upload) -> str:
    """An in-memory upload (small files) written to a temporary file for ingest."""
    fd, path = tempfile.mkstemp(suffix=".dcm", dir=settings.FILE_UPLOAD_TEMP_DIR)
    with os.fdopen(fd, "wb") as fh:
        for chunk in upload.chunks():
            fh.write(chunk)
    return path


class ReleaseView(APIView):
    """Hand an unfinished case back to the pool."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request, case_id: int):
        case, _ = selectors.get_case_for(request.user, case_id)
        assignment = Assignment.objects.filter(case=case, reader=request.user).first()
        if assignment is None:
            raise NotFound("you hold no claim on this case")
        claims.claim_release(assignment=assignment, user=request.user)
        return Response(status=204)


class AdjudicateView(APIView):
    @extend_schema(request=s.AdjudicateSerializer, responses={201: s.AdjudicationSerializer})
    def post(self, request, case_id: int):
        case, roles = selectors.get_case_for(request.user, case_id)
        require_role(roles, ProjectRole.ADJUDICATOR, LEAD, action="adjudicate")
        data = _valid(s.AdjudicateSerializer, request.data)
        chosen = None
        if data.get("chosen_read") is not None:
            chosen = Read.objects.filter(pk=data["chosen_read"], case=case).select_related("segmentation").first()
            if chosen is None:
                raise OkapiError("invalid", "the chosen read is not a read of this case",
                                 detail={"chosen_read": data["chosen_read"]})
        adjudication = consensus.case_adjudicate(case=case, adjudicator=request.user, answers=data.get("answers"),
                                                 chosen_read=chosen, note=data.get("note", ""))
        return Response(s.AdjudicationSerializer(adjudication).data, status=201)


class ReadDetailView(APIView):
    @extend_schema(responses=s.ReadSerializer)
    def get(self, request, read_id: int):
        read, _ = selectors.get_read_for(request.user, read_id)
        return Response(s.ReadSerializer(read).data)


class ReadVersionsView(APIView):
    @extend_schema(responses=s.ReadVersionSerializer(many=True))
    def get(self, request, read_id: int):
        read, _ = selectors.get_read_for(request.user, read_id)
        qs = ReadVersion.objects.filter(read=read).select_related("schema", "segmentation__series__study")
        return Response(s.ReadVersionSerializer(qs, many=True).data)
