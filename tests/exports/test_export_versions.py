"""Exports as immutable versions: same request on unchanged data gives the same hash (and the same bytes),
new labels a new version, old versions stay downloadable; who may export what; failures leave nothing."""

import errno
import io
import json
import os
import zipfile

import pytest

from tests.exports._util import build

pytestmark = pytest.mark.django_db

LIVER_ONLY = {"studies": 1, "first": 4}  # the 3-slice liver CT with the readers' masks: a quick campaign


def _storage_exports(settings, project_id: int) -> list[str]:
    """Archives stored for a project (storage outlives each test's rolled-back database: look per project)."""
    root = settings.DATA_DIR / "storage" / "exports" / str(project_id)
    return sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_same_request_same_hash_and_bytes_new_labels_new_version(make_labelled, monkeypatch, settings):
    from annotation.exports import build as build_module
    from annotation.models import Case

    campaign = make_labelled(studies=2, first=0).campaign  # MR2 (consensus) and the tied ultrasound case
    first = build(campaign.project_id).export
    seen = {}
    register = build_module.export_register

    def spy(**kwargs):
        seen.update(kwargs)
        return register(**kwargs)

    monkeypatch.setattr(build_module, "export_register", spy)
    again = build(campaign.project_id)
    assert again.reused and again.export.pk == first.pk and again.export.version == 1
    assert seen["content_hash"] == first.content_hash and seen["sha256"] == first.sha256  # byte-identical zip
    assert len(_storage_exports(settings, campaign.project_id)) == 1

    other = build(campaign.project_id, licence="CC BY 4.0")  # another request: another version
    assert not other.reused and other.export.version == 2 and other.export.content_hash != first.content_hash

    # New labels: the tied case is adjudicated, so a consensus export now holds it.
    tied = Case.objects.get(project_id=campaign.project_id, state="adjudication")
    adj = campaign.client(campaign.adjudicator)
    assert adj.post(f"/api/v1/cases/{tied.pk}/adjudication", {"answers": {"finding": "A", "likelihood": 3}},
                    format="json").status_code == 201
    newer = build(campaign.project_id).export
    assert newer.version == 3 and newer.content_hash != first.content_hash
    assert newer.summary["counts"].get("series_not_converted") == 1  # the ultrasound has no geometry

    # Every version stays listed and downloadable, byte for byte.
    scientist = campaign.client(campaign.scientist)
    listed = scientist.get(f"/api/v1/projects/{campaign.project_id}/exports").json()
    assert [e["version"] for e in listed] == [3, 2, 1]
    old = scientist.get(f"/api/v1/projects/{campaign.project_id}/exports/1/download")
    body = b"".join(old.streaming_content)
    assert old.status_code == 200 and old["ETag"] == f'"{first.content_hash}"' and len(body) == first.size
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert len(json.loads(archive.read("labels/consensus.json"))) == 1


def test_lead_may_export_identified_data_that_data_scientists_never_see(make_labelled):
    campaign = make_labelled(**LIVER_ONLY).campaign
    built = build(campaign.project_id, deidentified=False, cases="all", images="dicom")
    export = built.export
    assert not export.deidentified
    lead, scientist = campaign.client(campaign.lead), campaign.client(campaign.scientist)
    pid = campaign.project_id
    body = b"".join(lead.get(f"/api/v1/projects/{pid}/exports/1/download").streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        header = archive.read("labels/consensus.csv").decode().splitlines()[0]
        assert "patient_id" in header and "JANCT000" in archive.read("labels/consensus.csv").decode()
        assert "free_text" in archive.read("reads/reads.csv").decode().splitlines()[0]
        assert not [n for n in archive.namelist() if n.endswith("image.nii.gz")]  # DICOM only
        assert [n for n in archive.namelist() if n.endswith("consensus_mask.nii.gz")]  # masks still on the grid
    assert scientist.get(f"/api/v1/projects/{pid}/exports").json() == []
    assert scientist.get(f"/api/v1/projects/{pid}/exports/1").status_code == 404
    assert scientist.get(f"/api/v1/projects/{pid}/exports/1/download").status_code == 404
    assert lead.get(f"/api/v1/projects/{pid}/exports/1").json()["content_hash"] == export.content_hash


def test_who_may_export(make_labelled):
    campaign = make_labelled(**LIVER_ONLY).campaign
    other = make_labelled(prefix="other_", studies=1, first=5).campaign  # another study: another owner
    build(campaign.project_id)
    pid = campaign.project_id
    url = f"/api/v1/projects/{pid}/exports"
    stranger = other.client(other.readers[0])  # a radiologist of another project
    for response in (stranger.post(url, {}, format="json"), stranger.get(url), stranger.get(f"{url}/1"),
                     stranger.get(f"{url}/1/download"), stranger.head(f"{url}/1/download")):
        assert response.status_code == 404, response
    other_lead = other.client(other.lead)
    assert other_lead.post(url, {}, format="json").status_code == 404
    reader = campaign.client(campaign.readers[0])
    assert reader.post(url, {}, format="json").status_code == 403
    assert reader.get(f"{url}/1/download").status_code == 403
    scientist = campaign.client(campaign.scientist)
    refused = scientist.post(url, {"deidentified": False}, format="json")
    assert refused.status_code == 403 and "identified" in refused.json()["message"]
    assert scientist.post(url, {"cases": "all"}, format="json").status_code == 403
    accepted = scientist.post(url, {"split": {"seed": 5}}, format="json")
    assert accepted.status_code == 202 and accepted.json()["kind"] == "export"
    assert accepted.json()["params"]["request"]["split"] == {"validation": 0.15, "test": 0.15, "seed": 5}
    assert campaign.client(campaign.lead).post(url, {"deidentified": False}, format="json").status_code == 202
    bad = scientist.post(url, {"cases": "some", "images": "png", "schema_version": 9, "date_from": "2020-13-01",
                               "split": {"validation": 0.6, "test": 0.5}, "colour": 1}, format="json")
    assert bad.status_code == 400 and set(bad.json()["detail"]) == {
        "cases", "images", "schema_version", "date_from", "split", "request"}
    bad = scientist.post(url, {"modality": ["CT"], "date_from": "2024-02-01", "date_to": "2024-01-01"},
                         format="json")
    assert bad.status_code == 400 and set(bad.json()["detail"]) == {"modality", "date_to"}


def test_a_full_disk_fails_the_job_and_leaves_no_snapshot(make_labelled, monkeypatch, settings):
    from annotation.exports import archive
    from annotation.exports.services import export_params
    from annotation.models import Project
    from annotation.models_export import Export
    from annotation.tasks import export_build_task
    from core.jobs import job_create
    from core.models import Job

    campaign = make_labelled(**LIVER_ONLY).campaign
    project = Project.objects.get(pk=campaign.project_id)
    job = job_create(kind="export", user=campaign.lead,
                     params={"project": project.pk, "request": export_params({}, project=project)})
    real = archive.write_zip

    def full_disk(root, names, target, **kwargs):
        real(root, names[: len(names) // 2], target, remove=False)  # half the archive is on disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(archive, "write_zip", full_disk)
    with pytest.raises(OSError):
        export_build_task(str(job.pk))
    job = Job.objects.get(pk=job.pk)
    assert job.state == "failed" and "No space left" in job.error
    assert Export.objects.count() == 0 and _storage_exports(settings, project.pk) == []
    assert not [p for p in os.listdir(settings.FILE_UPLOAD_TEMP_DIR) if p.startswith("export-")]

    monkeypatch.setattr(archive, "write_zip", real)  # the disk has room again: the same job succeeds
    export_build_task(str(job.pk))
    job = Job.objects.get(pk=job.pk)
    assert job.state == "succeeded" and job.attempts == 2 and job.result["version"] == 1
    assert Export.objects.get().content_hash == job.result["content_hash"]


def test_okapi_export_on_the_command_line(make_labelled, tmp_path, capsys):
    from config.cli import main
    from imaging import storage

    campaign = make_labelled(**LIVER_ONLY).campaign
    out = tmp_path / "dataset.zip"
    assert main(["export", str(campaign.project_id), "--out", str(out), "--quiet", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert "export version 1" in printed and f"saved {out}" in printed
    from annotation.models_export import Export

    export = Export.objects.get()
    assert out.read_bytes() == open(storage.local_path(export.file), "rb").read()
    assert main(["export", str(campaign.project_id), "--no-download", "--quiet", "--seed", "2"]) == 0
    assert "same content as before" in capsys.readouterr().out
    assert main(["export", str(campaign.project_id), "--user", campaign.scientist.username, "--identified",
                 "--quiet"]) == 2
    assert "identified" in capsys.readouterr().err
