"""Prepare a demo installation: one user per role and real sample DICOM (shipped by pydicom and pydicom-data)."""

import json
from pathlib import Path

import data_store
import pydicom
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from tqdm import tqdm

from core.auth import user_create
from imaging.services.batch import ingest_paths

DEMO_USERS = [
    ("admin", "admin", "okapi-admin"),
    ("lead", "lead", "okapi-lead"),
    ("radiologist", "reader1", "okapi-reader1"),
    ("radiologist", "reader2", "okapi-reader2"),
    ("radiologist", "reader3", "okapi-reader3"),
    ("data_scientist", "scientist", "okapi-scientist"),
]
# pydicom's own test files that are complete, real images (many others there are deliberately broken).
PYDICOM_SAMPLES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "US1_J2KR.dcm", "SC_rgb.dcm",
                   "emri_small.dcm", "rtdose.dcm", "RG1_J2KR.dcm"]


def demo_sample_paths() -> list[str]:
    """Local paths of the sample DICOM (never downloaded: both packages carry their files)."""
    pydicom_dir = Path(pydicom.__file__).parent / "data" / "test_files"
    paths = [str(pydicom_dir / name) for name in PYDICOM_SAMPLES if (pydicom_dir / name).exists()]
    paths.append(str(Path(data_store.__file__).parent / "data"))
    return paths


class Command(BaseCommand):
    help = "Create demo users (one per role) and import sample DICOM; prints the logins."

    def add_arguments(self, parser):
        parser.add_argument("--no-import", action="store_true")

    def handle(self, *args, no_import=False, **options):
        User = get_user_model()
        for role, username, password in DEMO_USERS:
            if not User.objects.filter(username=username).exists():
                user_create(username=username, password=password, role=role)
        (Path(settings.DATA_DIR) / "demo_users.json").write_text(json.dumps(
            [{"role": role, "username": username, "password": password} for role, username, password in DEMO_USERS]))
        if not no_import:
            from imaging.services.batch import count_items

            paths = demo_sample_paths()
            with tqdm(total=count_items(paths), unit="file", desc="Importing sample DICOM") as bar:
                summary = ingest_paths(paths, source="demo", on_result=lambda r: bar.update(1))
            counts = summary.counts()
            self.stdout.write(f"sample DICOM: stored {counts['stored']}, already there {counts['duplicate']}, "
                              f"rejected {counts['rejected']}")
            for result in summary.results:
                if result.status == "rejected":
                    self.stdout.write(f"  rejected {Path(result.name).name}: {result.reason}")
        self.stdout.write("\nDemo logins (username / password):")
        for role, username, password in DEMO_USERS:
            self.stdout.write(f"  {role:<15} {username:<10} {password}")
