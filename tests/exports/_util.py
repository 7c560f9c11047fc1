"""Helpers of the export tests: build in-process, unpack, find a study's files in ../shared/data."""

import zipfile
from pathlib import Path

from tests.annotation.conftest import STUDY_SOURCES


def build(project_id: int, user=None, **raw):
    """Build an export in this process (what the worker's task does), returning the BuildResult."""
    from annotation.exports.build import export_build
    from annotation.exports.services import export_params
    from annotation.models import Project

    project = Project.objects.get(pk=project_id)
    return export_build(project=project, request=export_params(raw, project=project), user=user)


def unpack(export, target: Path) -> Path:
    from imaging import storage

    with zipfile.ZipFile(storage.local_path(export.file)) as archive:
        archive.extractall(target)
    return target


def source_of(shared_data: Path, study_uid: str, campaign, first: int = 0, deidentified: bool = True) -> Path:
    """The ../shared/data path a (de-identified) exported study came from."""
    from django.conf import settings

    from imaging.dicom.deid import DeidConfig, replacement_uid

    config = DeidConfig(secret=settings.OKAPI_DEID_SECRET or settings.SECRET_KEY, uid_root=settings.OKAPI_UID_ROOT)
    for i, uid in enumerate(campaign.study_uids):
        if (replacement_uid(uid, config) if deidentified else uid) == study_uid:
            return shared_data / "dicom" / STUDY_SOURCES[first + i]
    raise AssertionError(f"no source for {study_uid}")
