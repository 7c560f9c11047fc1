"""The CPU half of ingest, with no database: read, validate, repair or de-identify, and describe a file.

Kept free of Django so that it can run in worker processes (imaging.services.pool) while the request thread
writes the previous instance to the database: parsing and DICOM JSON are most of an instance's cost.
"""

import hashlib
import os
import tempfile
from dataclasses import dataclass, field

import pydicom

from imaging.dicom.instance import (
    InvalidInstance,
    ParsedInstance,
    apply_repairs,
    dumps,
    identity_repairs,
    instance_json,
    parse_file,
)


@dataclass(frozen=True)
class PrepareConfig:
    max_bytes: int
    deidentify: bool
    deid_secret: str
    uid_root: str
    temp_dir: str


@dataclass
class Prepared:
    """A file ready to be indexed, or the reason it cannot be. Picklable (it crosses process boundaries)."""

    name: str
    path: str = ""                # the file to store: the original, or a rewritten temporary copy
    rewritten: bool = False       # ``path`` is a temporary file prepare made (the caller deletes it if unused)
    sha256: str = ""              # of the file as received (recognises a re-send even of a rewritten copy)
    study_uid: str = ""
    series_uid: str = ""
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    transfer_syntax_uid: str = ""
    meta: dict = field(default_factory=dict)
    meta_text: str = ""
    pixel_index: str = ""
    number_of_frames: int = 0
    file_size: int = 0
    repairs: list[dict] = field(default_factory=list)
    deid_report: dict = field(default_factory=dict)
    error_code: str = ""
    error: str = ""


def instance_path(study_uid: str, series_uid: str, sop_uid: str) -> str:
    """Server-rooted path of an instance's WADO-RS resource."""
    return f"/dicomweb/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _parse(path: str) -> ParsedInstance:
    with open(path, "rb") as fh:
        return parse_file(fh, file_size=os.path.getsize(path))


def _rewrite(path: str, *, repairs: list[dict], config: PrepareConfig) -> tuple[str, dict]:
    """Write a modified copy (repaired identity and/or de-identified) to a new temporary file."""
    ds = pydicom.dcmread(path)
    apply_repairs(ds, repairs)
    report = {}
    if config.deidentify:
        from imaging.dicom.deid import DeidConfig
        from imaging.dicom.deid import deidentify as deid

        result = deid(ds, DeidConfig(secret=config.deid_secret, uid_root=config.uid_root))
        report = {"removed": len(result.removed), "emptied": len(result.emptied), "replaced": len(result.replaced),
                  "uids_replaced": len(result.uids_replaced), "burned_in_annotation": result.burned_in_annotation}
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    fd, out = tempfile.mkstemp(dir=config.temp_dir, suffix=".dcm")
    os.close(fd)
    try:
        ds.save_as(out, enforce_file_format=True)
    except Exception:
        os.unlink(out)
        raise
    return out, report


def prepare_file(path: str, name: str, config: PrepareConfig) -> Prepared:
    """Everything about one file that needs no database. Never raises: errors are in the result."""
    prepared = Prepared(name=name, path=path)
    try:
        size = os.path.getsize(path)
        if size > config.max_bytes:
            prepared.error_code = "too_large"
            prepared.error = (f"file of {size} bytes is over the limit of {config.max_bytes} bytes "
                              "(OKAPI_MAX_INSTANCE_BYTES)")
            return prepared
        prepared.sha256 = _sha256(path)
        parsed = _parse(path)
        repairs = identity_repairs(parsed, uid_root=config.uid_root)
        meta_uid = str(getattr(parsed.file_meta, "MediaStorageSOPInstanceUID", "") or "")
        meta_mismatch = bool(meta_uid) and meta_uid != str(parsed.dataset.get("SOPInstanceUID", "") or meta_uid)
        if repairs or config.deidentify or meta_mismatch:  # the stored copy's file meta must name its own UID
            prepared.path, prepared.deid_report = _rewrite(path, repairs=repairs, config=config)
            prepared.rewritten = True
            parsed = _parse(prepared.path)
        prepared.repairs = repairs
        prepared.study_uid, prepared.series_uid = parsed.study_uid, parsed.series_uid
        prepared.sop_instance_uid, prepared.sop_class_uid = parsed.sop_instance_uid, parsed.sop_class_uid
        prepared.transfer_syntax_uid = parsed.transfer_syntax_uid
        prepared.meta = instance_json(parsed, instance_path=instance_path(parsed.study_uid, parsed.series_uid,
                                                                          parsed.sop_instance_uid))
        prepared.meta_text = dumps(prepared.meta)
        if parsed.pixel_index is not None:
            prepared.pixel_index = parsed.pixel_index.to_json()
            prepared.number_of_frames = parsed.pixel_index.number_of_frames
        prepared.file_size = os.path.getsize(prepared.path)
    except InvalidInstance as exc:
        prepared.error_code, prepared.error = exc.code, exc.reason
        prepared.sop_instance_uid, prepared.sop_class_uid = exc.sop_instance_uid, exc.sop_class_uid
    except OSError as exc:  # the archive's disk, not the file, is at fault: worth a retry
        prepared.error_code, prepared.error = "temporary_failure", f"temporarily unable to store: {exc}"
    except Exception as exc:  # noqa: BLE001 - one file's unexpected failure must not take the batch down
        prepared.error_code = "processing_failure"
        prepared.error = f"could not be stored: {type(exc).__name__}: {exc}"
    if prepared.error and prepared.rewritten:
        os.unlink(prepared.path)
        prepared.path, prepared.rewritten = path, False
    return prepared
