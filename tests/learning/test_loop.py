"""The active-learning loop on real chest X-rays (PneumoniaMNIST stored as DICOM) with a real Celery worker on
Redis: a round trains a tiny model on the consensus labels, scores every case and orders "next case"; a worker
killed mid-training leaves no promoted version and a job that is retried to exactly one version."""

import os
import signal
import time

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from tests.annotation.conftest import api_client

pytestmark = pytest.mark.django_db(transaction=True)
CLASSES = ["normal", "pneumonia"]
SCHEMA = {"questions": [{"key": "finding", "type": "single_choice", "options": CLASSES}]}
MODEL = {"task": "classification", "network": "smallcnn", "spatial_dims": 2, "input_size": [28, 28],
         "dropout": 0.2}


def _write_dicom(image: np.ndarray, path, index: int) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = f"PNEUMONIAMNIST^{index}", f"PM{index:04d}", "CR"
    ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "20230101", 1, 1
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = image.astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def xray_campaign(make_user, shared_data, tmp_path, settings):
    """40 real chest X-rays (20 per class) as DICOM cases; the first 24 read (k=1) with their true labels."""
    from annotation.models import Project
    from annotation.services.claims import case_claim_next
    from annotation.services.projects import cases_add, member_add, project_create
    from annotation.services.reads import read_save
    from imaging.services.ingest import ingest_file

    settings.OKAPI_CLAIM_TOP_FEW = 1
    data = np.load(shared_data / "classification" / "pneumoniamnist_28_full.npz")
    images, labels = data["train_images"], data["train_labels"].ravel()
    rng = np.random.default_rng(0)
    picks = np.concatenate([rng.choice(np.flatnonzero(labels == c), 20, replace=False) for c in (0, 1)])
    rng.shuffle(picks)
    lead, reader = make_user("lead", "lead"), make_user("radiologist", "reader")
    uids, truth = [], {}
    for n, i in enumerate(picks):
        path = tmp_path / f"{n}.dcm"
        _write_dicom(images[i], path, n)
        result = ingest_file(str(path), user=lead, source="test")
        assert result.ok, result.reason
        uids.append(result.study_uid)
        truth[result.study_uid] = CLASSES[int(labels[i])]
    project = project_create(user=lead, name="Pneumonia", reads_per_case=1, agreement_threshold=0.0, schema=SCHEMA)
    member_add(project=project, user=lead, member=reader, role="radiologist")
    cases_add(project=project, user=lead, study_uids=uids)
    for _ in range(24):
        claim = case_claim_next(project=project, reader=reader)
        read_save(case=claim.case, reader=reader, answers={"finding": truth[claim.case.study.study_uid]},
                  submit=True, base_version=0)
    return Project.objects.get(pk=project.pk), lead, truth


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_round_trains_scores_and_orders_next_case(xray_campaign, start_worker, token_for, make_user):
    from annotation.models import Membership
    from core.models import Job
    from learning.models import CaseScore, ModelVersion, Round

    project, lead, truth = xray_campaign
    client = api_client(token_for(lead))
    r = client.put(f"/api/v1/projects/{project.pk}/learning", {
        "target": "finding", "model_config": MODEL, "epochs": 12, "batch_size": 8, "patience": 4,
        "strategy": "hybrid", "budget": 8, "mc_passes": 6}, format="json")
    assert r.status_code == 200, r.content
    bad = client.put(f"/api/v1/projects/{project.pk}/learning", {"target": "nope"}, format="json")
    assert bad.status_code == 400 and "target" in bad.json()["detail"]
    bad = client.put(f"/api/v1/projects/{project.pk}/learning", {"model_config": [1, 2]}, format="json")
    assert bad.status_code == 400 and "model_config" in bad.json()["detail"]
    bad = client.put(f"/api/v1/projects/{project.pk}/learning", {
        "epochs": 0, "budget": 0, "mc_passes": 0, "batch_size": 0, "learning_rate": -1}, format="json")
    assert bad.status_code == 400 and set(bad.json()["detail"]) == {
        "epochs", "budget", "mc_passes", "batch_size", "learning_rate"}
    assert client.get(f"/api/v1/projects/{project.pk}/learning").json()["epochs"] == 12  # nothing saved
    start_worker("gpu")
    resp = client.post(f"/api/v1/projects/{project.pk}/rounds", {"budget": 8}, format="json")
    assert resp.status_code == 202, resp.content
    job_id = resp.json()["id"]
    job = _wait(lambda: Job.objects.filter(pk=job_id, state__in=["succeeded", "failed"]).first(), 300, "the round")
    assert job.state == "succeeded", job.error
    assert job.result["model_version"] == 1, job.result
    version = ModelVersion.objects.get(project=project)
    assert version.promoted and version.labels_used == 24 and 0.0 <= version.metrics["auc"] <= 1.0
    assert set(version.data["validation"]).isdisjoint(version.data["train"])  # held out, never trained on
    assert CaseScore.objects.filter(model_version=version).count() == 40
    score = CaseScore.objects.filter(model_version=version).first()
    assert sum(score.probs) == pytest.approx(1.0, abs=1e-4) and len(score.mc_probs) == 6
    round_ = Round.objects.get(project=project)
    assert len(round_.ranking) == 8 and round_.model_version == version
    # The next reader gets the ranking's first case.
    second = make_user("radiologist", "reader2")
    Membership.objects.create(project=project, user=second, role="radiologist")
    nxt = api_client(token_for(second)).post(f"/api/v1/projects/{project.pk}/next-case").json()
    assert nxt["case"]["id"] == round_.ranking[0]
    curve = client.get(f"/api/v1/projects/{project.pk}/learning-curve").json()
    assert curve[0]["labels"] == 24 and curve[0]["auc"] == version.metrics["auc"]
    png = client.get(f"/api/v1/projects/{project.pk}/learning-curve.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"


def test_killing_the_worker_mid_training_leaves_no_version_and_the_job_recovers(xray_campaign, start_worker,
                                                                                 token_for):
    from datetime import timedelta

    from django.utils import timezone

    from core.jobs import jobs_fail_stale
    from core.models import Job
    from learning.models import LearningConfig, ModelVersion
    from learning.services import learning_configure, round_create

    project, lead, _ = xray_campaign
    learning_configure(project=project, target="finding", model_config=MODEL, epochs=5000, patience=5000,
                       batch_size=4, budget=4)
    worker = start_worker("gpu")
    job = round_create(project=project, user=lead)
    _wait(lambda: "epoch" in Job.objects.get(pk=job.pk).message, 300, "training to start")
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool child, mid-epoch
    worker.wait(timeout=30)
    time.sleep(1)
    assert not ModelVersion.objects.filter(project=project).exists()
    assert Job.objects.get(pk=job.pk).state == "running"
    # Its heartbeat goes stale: housekeeping queues it again; a new worker finishes it (shorter settings now).
    LearningConfig.objects.filter(project=project).update(epochs=3, patience=2)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert jobs_fail_stale(older_than=timedelta(minutes=30)) == 1
    assert Job.objects.get(pk=job.pk).state == "queued"
    start_worker("gpu")
    done = _wait(lambda: Job.objects.filter(pk=job.pk, state__in=["succeeded", "failed"]).first(), 300, "retry")
    assert done.state == "succeeded", done.error
    assert done.attempts == 2
    assert ModelVersion.objects.filter(project=project).count() == 1  # the retry made the one version


def test_round_zero_is_a_cold_start_without_labels(make_user, shared_data, tmp_path, settings):
    """Before any consensus label, a round ranks by typical, diverse embeddings (no model to train yet)."""
    from annotation.services.projects import cases_add, project_create
    from core.jobs import job_create
    from learning.services import learning_configure, round_run

    data = np.load(shared_data / "classification" / "pneumoniamnist_28_full.npz")
    lead = make_user("lead", "lead0")
    from imaging.services.ingest import ingest_file

    uids = []
    for n in range(12):
        _write_dicom(data["val_images"][n], tmp_path / f"{n}.dcm", 100 + n)
        uids.append(ingest_file(str(tmp_path / f"{n}.dcm"), user=lead, source="test").study_uid)
    project = project_create(user=lead, name="Cold", reads_per_case=1, schema=SCHEMA)
    cases_add(project=project, user=lead, study_uids=uids)
    learning_configure(project=project, target="finding", model_config=MODEL, strategy="entropy", budget=5)
    job = job_create(kind="learning_round", params={"project": project.pk, "strategy": "entropy", "budget": 5})
    round_ = round_run(job=job)
    assert round_.strategy == "cold_start" and round_.model_version is None
    assert len(round_.ranking) == 5 and len(set(round_.ranking)) == 5


def test_the_class_prior_ignores_labels_a_strategy_chose(make_user):
    """A rare-class hunt labels many rare cases; the prior that decides what is rare must not count them."""
    from annotation.models import Case
    from annotation.services.projects import project_create
    from learning.models import Round
    from learning.services import _class_prior

    lead = make_user("lead", "lead_p")
    project = project_create(user=lead, name="Prior", reads_per_case=1, schema=SCHEMA)
    cases = [Case(pk=i) for i in range(1, 41)]
    labels = [0] * 2 + [1] * 18 + [0] * 15 + [1] * 5  # 20 seed labels (10% rare), then 20 hunted (75% rare)
    Round.objects.create(project=project, number=1, strategy="hybrid", budget=20, ranking=list(range(21, 41)))
    Round.objects.create(project=project, number=2, strategy="random", budget=5, ranking=[1, 2, 3])
    assert list(_class_prior(project, cases, labels, 2)) == [2, 18]
    assert _class_prior(project, [], [], 2) is None
