"""`make run`'s demo campaign: the sample studies as cases, the demo readers as its radiologists."""

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_demo_campaign_is_made_once_from_the_sample_studies(dicom_files):
    from annotation.models import Case, Membership, Project
    from imaging.services.ingest import ingest_file

    call_command("demo_setup", no_import=True)
    for path in [p for p in dicom_files if "dcm_qa_ts" in str(p)][:1] + [
            p for p in dicom_files if "seg_sr" in str(p)]:
        ingest_file(str(path), source="demo")
    call_command("demo_campaign")
    call_command("demo_campaign")  # idempotent
    project = Project.objects.get(name="Demo campaign")
    readers = set(Membership.objects.filter(project=project, role="radiologist").values_list("user__username",
                                                                                              flat=True))
    assert readers == {"reader1", "reader2", "reader3"}
    # studies with images (the liver CT with its SEG, the MR slice); the SEG's and SR's own studies are not cases
    assert Case.objects.filter(project=project).count() == 2
    assert not Case.objects.filter(project=project, study__series__modality__in=["SR"]).exists()
