"""A demo campaign for `make run`: the sample studies, the demo readers, a small schema (idempotent)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db.models import Exists, OuterRef

from annotation.models import Project
from annotation.services.projects import cases_add, member_add, project_create
from imaging.dicom.instance import NON_IMAGE_SOP_CLASSES
from imaging.models import Instance, Study

NAME = "Demo campaign"
SCHEMA = {
    "questions": [
        {"key": "finding", "label": "Finding", "type": "single_choice",
         "options": [{"value": "normal", "label": "Normal"}, {"value": "abnormal", "label": "Abnormal"},
                     {"value": "uncertain", "label": "Uncertain"}]},
        {"key": "likelihood", "label": "Likelihood of disease (1-5)", "type": "ordinal", "min": 1, "max": 5},
    ],
    "segments": [{"name": "Lesion", "color": "#e6194b",
                  "code": {"scheme": "SCT", "value": "52988006", "meaning": "Lesion"}}],
    "free_text": True,
    "confidence": {"min": 1, "max": 5},
}


class Command(BaseCommand):
    help = "Create the demo campaign (demo users must exist: run demo_setup first)."

    def handle(self, *args, **options):
        users = {u.username: u for u in get_user_model().objects.filter(
            username__in=["lead", "reader1", "reader2", "reader3", "scientist"])}
        if "lead" not in users:
            self.stdout.write("no demo users: run `manage.py demo_setup` first")
            return
        if Project.objects.filter(name=NAME).exists():
            self.stdout.write(f"{NAME}: already there")
            return
        lead = users["lead"]
        project = project_create(user=lead, name=NAME, reads_per_case=3, agreement_threshold=0.6, schema=SCHEMA,
                                 description="The sample studies, read by the three demo readers.")
        for name in ("reader1", "reader2", "reader3"):
            if name in users:
                member_add(project=project, user=lead, member=users[name], role="radiologist")
        if "scientist" in users:
            member_add(project=project, user=lead, member=users["scientist"], role="data_scientist")
        images = Instance.objects.filter(series__study=OuterRef("pk")).exclude(sop_class_uid__in=NON_IMAGE_SOP_CLASSES)
        studies = list(Study.objects.filter(Exists(images)).order_by("created_at", "id")
                       .values_list("study_uid", flat=True)[:30])
        Study.objects.filter(study_uid__in=studies, owner__isnull=True).update(owner=lead)
        added = cases_add(project=project, user=lead, study_uids=studies)["added"] if studies else 0
        self.stdout.write(f"{NAME}: {added} cases, readers reader1-3, lead 'lead'")
