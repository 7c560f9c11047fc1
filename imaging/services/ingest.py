"""Ingest: one code path for STOW-RS, browser uploads, ``okapi import`` and the C-STORE receiver.

Each file is parsed once; a bad file is rejected with its reason and nothing of it is kept; a re-sent instance
(same SOP Instance UID, same bytes) is a no-op; storing the file and indexing it happen together or not at all.
"""

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from core.audit import audit_record
from core.models import Role
from core.streams import read_ahead
from imaging import storage
from imaging.access import can_see_study_pk
from imaging.dicom.instance import (
    SEGMENTATION_SOP_CLASSES,
    SERIES_TAGS,
    STUDY_TAGS,
    InvalidInstance,
    first_value,
    pick,
)
from imaging.hooks import run_after_store
from imaging.models import Instance, Series, Study
from imaging.services.pool import prepare_many
from imaging.services.prepare import PrepareConfig, Prepared, prepare_file

log = logging.getLogger("okapi.ingest")

# DICOM status codes used in STOW-RS FailureReason and C-STORE responses (PS3.4 Annex B, PS3.18 Table 10.5.3-1)
STATUS_PROCESSING_FAILURE = 0xC000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_NOT_AUTHORIZED = 0x0124
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000
STATUS_TS_NOT_SUPPORTED = 0xC122
STATUS_ELEMENTS_DISCARDED = 0xB006

_FAILURE_CODES = {
    "unsupported_transfer_syntax": STATUS_TS_NOT_SUPPORTED,
    "too_large": STATUS_OUT_OF_RESOURCES,
    "temporary_failure": STATUS_OUT_OF_RESOURCES,  # a PACS retries A7xx, not C000
    "permission_denied": STATUS_NOT_AUTHORIZED,
    "wrong_study": STATUS_DATASET_MISMATCH,
    "conflict": STATUS_DATASET_MISMATCH,
}


@dataclass
class IngestResult:
    """The outcome for one file. ``status`` is stored, duplicate (already had it, nothing changed) or rejected."""

    status: str
    name: str = ""
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    reason: str = ""
    code: str = ""
    repairs: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in {"stored", "duplicate"}

    @property
    def failure_code(self) -> int:
        return _FAILURE_CODES.get(self.code, STATUS_PROCESSING_FAILURE)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in ("", [], None)}


def prepare_config(deidentify: bool | None = None) -> PrepareConfig:
    return PrepareConfig(
        max_bytes=settings.OKAPI_MAX_INSTANCE_BYTES,
        deidentify=settings.OKAPI_DEIDENTIFY if deidentify is None else deidentify,
        deid_secret=settings.OKAPI_DEID_SECRET, uid_root=settings.OKAPI_UID_ROOT,
        temp_dir=settings.FILE_UPLOAD_TEMP_DIR,
    )


def ingest_file(path: str, *, user=None, source: str, name: str = "", consume: bool = False,
                expected_study_uid: str | None = None, deidentify: bool | None = None, request=None,
                ip: str | None = None, detail: dict | None = None) -> IngestResult:
    """Archive one DICOM file.

    ``consume=True`` lets ingest move the file into storage (temporary files of STOW and uploads); otherwise
    it is copied and left alone. ``user`` None means a trusted system source (C-STORE, CLI).
    Never raises for a bad file: the result says rejected and why.
    """
    prepared = prepare_file(path, name or os.path.basename(path), prepare_config(deidentify))
    return ingest_prepared(prepared, user=user, source=source, consume=consume,
                           expected_study_uid=expected_study_uid, request=request, ip=ip, detail=detail)


def ingest_files(items: Iterable[tuple[str, str]], *, user=None, source: str, consume: bool = False,
                 expected_study_uid: str | None = None, deidentify: bool | None = None, request=None,
                 detail: dict | None = None) -> Iterator[tuple[str, IngestResult]]:
    """Archive many (path, name) files: prepared in worker processes a few ahead, indexed here in order.

    Yields (path, result) as each is done, so a caller may delete what it no longer needs.
    """
    originals: dict[str, str] = {}

    def remember(items_):
        for path, name in items_:
            originals[name] = path
            yield path, name

    common = {"user": user, "source": source, "consume": consume, "expected_study_uid": expected_study_uid,
              "request": request, "detail": detail}
    size = max(1, settings.OKAPI_INGEST_GROUP) if storage.is_local() else 1
    prepared_files = prepare_many(remember(items), prepare_config(deidentify))
    if size > 1:  # parsing goes on in the worker processes while a group is written
        prepared_files = read_ahead(prepared_files, depth=size, discard=_discard_prepared)
    with contextlib.closing(prepared_files):  # closed with this generator: the read-ahead thread stops
        for chunk in _chunks(prepared_files, size):
            results = _ingest_group(chunk, **common) if len(chunk) > 1 else [ingest_prepared(chunk[0], **common)]
            for prepared, result in zip(chunk, results, strict=True):
                yield originals.pop(prepared.name, prepared.path), result


def _discard_prepared(prepared: Prepared) -> None:
    """Delete a rewritten copy (repaired or de-identified) that was not moved into storage."""
    if prepared.rewritten and os.path.exists(prepared.path):
        os.unlink(prepared.path)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    """Lists of up to ``size`` items. If ``items`` raises (a STOW-RS body that breaks), what was taken before
    is handed over first and the error raised after, so that nothing already received is dropped."""
    chunk: list = []
    iterator = iter(items)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            break
        except BaseException as exc:
            if chunk:
                yield chunk
            raise exc
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _ingest_group(chunk: list[Prepared], **common) -> list[IngestResult]:
    """Index and store several prepared files in one transaction: one commit (one WAL flush) for the group
    instead of one per instance, which was a third of an instance's time on PostgreSQL.

    All or nothing: if anything goes wrong for any file of the group (a concurrent ingest of the same
    instance, a conflict, a hook refusing a SEG, a database error), the transaction is rolled back, the files
    already put into storage are taken back, and the group is ingested again one file at a time, each in its
    own transaction, exactly as without grouping. Results are given out only after the commit."""
    placed: list[tuple[str, str, bool]] = []  # (storage key, source path, moved)
    try:
        with transaction.atomic():
            try:
                results = [_ingest_in_group(prepared, placed, **common) for prepared in chunk]
            except BaseException:
                # Inside the transaction, while it still holds the group's rows: a concurrent ingest of one of
                # these instances waits on them, so no file taken back here can be one it stored.
                for key, path, moved in reversed(placed):
                    try:
                        storage.take_back(key, path, moved=moved)
                    except OSError:
                        log.exception("could not take %s back out of storage", key)
                raise
    except Exception:  # noqa: BLE001 - any failure: the slow, exact path decides for each file
        log.info("a group of %d instances could not be stored together; storing them one by one", len(chunk))
        return [ingest_prepared(prepared, **common) for prepared in chunk]
    for prepared in chunk:
        _discard_prepared(prepared)
    return results


def _ingest_in_group(prepared: Prepared, placed: list, *, user, source, consume, expected_study_uid, request,
                     detail) -> IngestResult:
    """One file of a group: a result for what ingest refuses without writing, an exception for anything else."""
    if prepared.error:
        return _unreadable(prepared)
    return _index_and_store(prepared, user=user, source=source, move=prepared.rewritten or consume,
                            expected_study_uid=expected_study_uid, request=request, ip=None,
                            detail=_detail(prepared, detail), placed=placed)


def _unreadable(prepared: Prepared) -> IngestResult:
    return IngestResult("rejected", prepared.name, sop_instance_uid=prepared.sop_instance_uid,
                        sop_class_uid=prepared.sop_class_uid, reason=prepared.error, code=prepared.error_code)


def _detail(prepared: Prepared, detail: dict | None) -> dict:
    """What the audit row of a stored instance says beyond the defaults (the caller's, and de-identification)."""
    return (detail or {}) | ({"deid": prepared.deid_report} if prepared.deid_report else {})


def ingest_prepared(prepared: Prepared, *, user=None, source: str, consume: bool = False,
                    expected_study_uid: str | None = None, request=None, ip: str | None = None,
                    detail: dict | None = None) -> IngestResult:
    """Index and store a prepared file (the database half of ingest)."""
    name = prepared.name
    try:
        if prepared.error:
            return _unreadable(prepared)
        return _index_and_store(prepared, user=user, source=source, move=prepared.rewritten or consume,
                                expected_study_uid=expected_study_uid, request=request, ip=ip,
                                detail=_detail(prepared, detail))
    except InvalidInstance as exc:
        return IngestResult("rejected", name, sop_instance_uid=exc.sop_instance_uid, sop_class_uid=exc.sop_class_uid,
                            reason=exc.reason, code=exc.code)
    except (DatabaseError, OSError) as exc:  # the archive, not the file, is at fault: worth a retry
        log.exception("ingest of %s failed", name)
        return IngestResult("rejected", name, reason=f"temporarily unable to store: {type(exc).__name__}: {exc}",
                            code="temporary_failure")
    except Exception as exc:  # one file's unexpected failure must not take the batch down
        log.exception("ingest of %s failed", name)
        return IngestResult("rejected", name, reason=f"could not be stored: {type(exc).__name__}: {exc}",
                            code="processing_failure")
    finally:
        _discard_prepared(prepared)


def _may_create_study(user) -> bool:
    return user is None or user.is_admin or user.role == Role.LEAD


def _index_and_store(prepared: Prepared, *, user, source, move, expected_study_uid, request, ip,
                     detail, placed: list | None = None) -> IngestResult:
    """Index and store one prepared file: in its own transaction, tried again if a concurrent ingest made the
    same rows first; or, with ``placed`` (a group's), once, in the caller's transaction (see _store_once)."""
    base = IngestResult("stored", prepared.name, sop_instance_uid=prepared.sop_instance_uid,
                        sop_class_uid=prepared.sop_class_uid, study_uid=prepared.study_uid,
                        series_uid=prepared.series_uid, repairs=prepared.repairs)
    if expected_study_uid and prepared.study_uid != expected_study_uid:
        return _rejected(base, "wrong_study", f"the instance belongs to study {prepared.study_uid}, "
                         f"not to {expected_study_uid} named in the request")
    if placed is not None:
        return _store_once(prepared, base, user=user, source=source, move=move, request=request, ip=ip,
                           detail=detail, placed=placed)
    for attempt in range(3):
        try:
            return _store_once(prepared, base, user=user, source=source, move=move, request=request, ip=ip,
                               detail=detail, first_try=attempt == 0)
        except IntegrityError:
            # A concurrent ingest created the same patient/study/series/instance first: look again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _rejected(base: IngestResult, code: str, reason: str) -> IngestResult:
    base.status, base.code, base.reason = "rejected", code, reason
    return base


# Ingest runs these for every instance: plain statements, since building them with the ORM cost more than
# running them (profiled on a 192-slice series), and as few round trips as it can (each one is a wait on a
# loaded machine). _LOOKUP_SQL answers in one: is the instance stored already (and where), and do its study
# and series exist.
_LOOKUP_SQL = ("SELECT ei.sha256, ese.series_uid, est.study_uid, est.id, st.id, st.modalities, se.id, se.study_id,"
               " se.modality FROM (SELECT 1 AS one) AS q"
               " LEFT JOIN imaging_instance ei ON ei.sop_uid = %s"
               " LEFT JOIN imaging_series ese ON ese.id = ei.series_id"
               " LEFT JOIN imaging_study est ON est.id = ese.study_id"
               " LEFT JOIN imaging_study st ON st.study_uid = %s"
               " LEFT JOIN imaging_series se ON se.series_uid = %s")
_STUDY_LOCK_SQL = "SELECT modalities FROM imaging_study WHERE id = %s"
_SERIES_SQL = "SELECT id, study_id, modality FROM imaging_series WHERE series_uid = %s"
# One more instance in an existing series: both counters in one statement where the database can.
_COUNT_PG_SQL = ("WITH s AS (UPDATE imaging_series SET num_instances = num_instances + 1, updated_at = %s"
                 " WHERE id = %s RETURNING study_id)"
                 " UPDATE imaging_study SET num_instances = num_instances + 1, updated_at = %s"
                 " WHERE id = (SELECT study_id FROM s)")


_INSERT_SQL: dict[tuple, str] = {}


def _insert(model, **values):
    """``model(**values)`` saved with one plain ``INSERT ... RETURNING id``; the unsaved-then-saved instance.

    Columns, defaults, ``auto_now`` stamps and value conversion come from the model's own fields (what
    ``Model.save()`` uses), without the ORM's statement compiler, which cost more than the insert on the
    ingest hot path (three inserts per new study). No signals are sent: Okapi registers none for these models.
    """
    obj = model(**values)
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    key = (model, connection.vendor)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        sql = _INSERT_SQL[key] = (
            f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
            f"VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {quote(model._meta.pk.column)}")
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    obj.pk = _fetch(sql, params)[0]
    obj._state.adding, obj._state.db = False, connection.alias
    return obj


def _fetch(sql: str, params: list):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _execute(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _store_once(prepared: Prepared, base: IngestResult, *, user, source, move, request, ip, detail,
                first_try: bool = True, placed: list | None = None) -> IngestResult:
    """Index and store one instance in its own transaction; or, with ``placed`` (a group's), inside the
    caller's transaction, recording the file put into storage there so that the caller can take it back."""
    parsed, meta, sha, path = prepared, prepared.meta, prepared.sha256, prepared.path
    key = storage.instance_key(parsed.study_uid, parsed.series_uid, parsed.sop_instance_uid)
    stored_file = False
    with transaction.atomic() if placed is None else contextlib.nullcontext():
        try:
            (existing_sha, existing_series, existing_study, existing_study_pk, study_pk, study_modalities,
             found_series_pk, found_series_study_pk, found_series_modality) = _fetch(
                _LOOKUP_SQL, [parsed.sop_instance_uid, parsed.study_uid, parsed.series_uid])
            if existing_sha is not None:
                if user is not None and not can_see_study_pk(user, existing_study_pk):
                    return _rejected(base, "permission_denied", "not permitted to store into this study")
                if existing_sha == sha:
                    base.status = "duplicate"
                    base.reason = "already stored (same SOP Instance UID and content): nothing changed"
                    return base
                if (existing_series, existing_study) == (parsed.series_uid, parsed.study_uid):
                    # The same instance again, sent another way (another transfer syntax, another sender's
                    # file meta, a corrected header): the stored copy stays, as Orthanc and PACS do by default.
                    base.status = "duplicate"
                    base.reason = ("already stored; this copy differs in encoding or content and was not stored: "
                                   "the stored instance is kept")
                    return base
                return _rejected(base, "conflict", "SOP Instance UID already stored in another series or study; "
                                 "the stored instance is kept")
            modality = str(first_value(meta, "00080060", ""))[:16]
            if study_pk is None:
                if user is not None and not _may_create_study(user):
                    return _rejected(base, "permission_denied", "only project leads and administrators may add "
                                     "new studies")
                # A new study holds this one series and instance: counters are set as the rows are made.
                study_pk = _create_study(parsed, meta, user=user, modality=modality,
                                         uid_generated=any(r["keyword"] == "StudyInstanceUID" for r in base.repairs))
                if first_try:
                    series_pk = _create_series(parsed, meta, study_pk, modality)
                else:  # the series may exist in another study (the first try's IntegrityError): say so
                    series_pk = _series_for(parsed, meta, study_pk, modality)[0]
            else:
                if user is not None and not can_see_study_pk(user, study_pk):
                    return _rejected(base, "permission_denied", "not permitted to store into this study")
                if user is not None and not _may_create_study(user) and (
                        parsed.sop_class_uid not in SEGMENTATION_SOP_CLASSES):
                    # A reader adds their segmentation (annotation keeps it with their read, hidden from the
                    # other readers); anything else would change the case every reader sees, or show one
                    # reader's findings (an SR report) to the others.
                    return _rejected(base, "permission_denied", "only project leads and administrators may add "
                                     "images or reports to a study; readers store segmentations (DICOM SEG)")
                now = timezone.now()
                if found_series_pk is not None:  # one more instance: the counters go up in place
                    if found_series_study_pk != study_pk:
                        raise InvalidInstance(f"series {parsed.series_uid} is already stored in another study",
                                              code="conflict", sop_instance_uid=parsed.sop_instance_uid)
                    series_pk, modality = found_series_pk, found_series_modality
                    _count_instance(series_pk, study_pk, now)
                else:  # a new series: the study's list of modalities changes, under the study's row lock
                    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
                    study_modalities = _fetch(_STUDY_LOCK_SQL + lock, [study_pk])[0]
                    series_pk, modality, new_series = _series_for(parsed, meta, study_pk, modality)
                    if new_series:
                        modalities = set(filter(None, study_modalities.split("\\"))) | {modality}
                        _execute("UPDATE imaging_study SET num_instances = num_instances + 1, "
                                 "num_series = num_series + 1, modalities = %s, updated_at = %s WHERE id = %s",
                                 ["\\".join(sorted(filter(None, modalities))), now, study_pk])
                    else:  # another ingest made the series meanwhile
                        _count_instance(series_pk, study_pk, now)
            instance = _insert(
                Instance,
                sop_uid=parsed.sop_instance_uid, series_id=series_pk, sop_class_uid=parsed.sop_class_uid,
                instance_number=_int(first_value(meta, "00200013", None)),
                transfer_syntax_uid=parsed.transfer_syntax_uid,
                rows=_int(first_value(meta, "00280010", None)), columns=_int(first_value(meta, "00280011", None)),
                bits_allocated=_int(first_value(meta, "00280100", None)),
                number_of_frames=prepared.number_of_frames, file=key, file_size=prepared.file_size, sha256=sha,
                metadata=prepared.meta_text, pixel_index=prepared.pixel_index, repairs=base.repairs,
                deidentified=bool(prepared.deid_report),
            )
            storage.put_file(path, key, move=move)
            stored_file = True
            if placed is not None:
                placed.append((key, path, move))
            # After the file is in storage: a hook may read it (a reader's SEG joins their read, and a case
            # it completes is evaluated, masks and all); a hook's refusal still removes it (below).
            run_after_store(instance, prepared, user=user, source=source)
            audit_record(user=user, action="store", object_type="instance", object_id=parsed.sop_instance_uid,
                         study_uid=parsed.study_uid, request=request, ip=ip,
                         detail={"source": source, "name": base.name, "series_uid": parsed.series_uid,
                                 **({"repairs": base.repairs} if base.repairs else {}), **detail})
        except BaseException:
            if stored_file and placed is None:
                # Inside the transaction, while it still holds the instance's row: a concurrent ingest of the
                # same instance waits on that row, so it cannot have put its own file here yet.
                storage.delete_file(key)
            raise
    return base


def _count_instance(series_pk: int, study_pk: int, now) -> None:
    """One more instance in an existing series: both counters, in one statement on PostgreSQL."""
    if connection.vendor == "postgresql":
        _execute(_COUNT_PG_SQL, [now, series_pk, now])
        return
    _execute("UPDATE imaging_series SET num_instances = num_instances + 1, updated_at = %s WHERE id = %s",
             [now, series_pk])
    _execute("UPDATE imaging_study SET num_instances = num_instances + 1, updated_at = %s WHERE id = %s",
             [now, study_pk])


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


_PATIENT_INSERT_SQL = ("INSERT INTO imaging_patient (patient_id, issuer, name, birth_date, sex) VALUES (%s, %s, %s, %s, %s)"
                       " ON CONFLICT (patient_id, issuer) DO NOTHING RETURNING id")
_PATIENT_SQL = "SELECT id FROM imaging_patient WHERE patient_id = %s AND issuer = %s"
# PostgreSQL: new or known, one statement. (A patient another transaction commits meanwhile is invisible to
# this statement's snapshot: no row, and the plain SELECT below finds it.)
_PATIENT_PG_SQL = (f"WITH made AS ({_PATIENT_INSERT_SQL}) SELECT id FROM made UNION ALL "
                   "SELECT id FROM imaging_patient WHERE patient_id = %s AND issuer = %s LIMIT 1")


def _patient_pk(meta: dict, patient_id: str, issuer: str, name: str) -> int:
    """The patient's row, made if new: one statement on PostgreSQL; elsewhere one for a new patient, two for a
    known one."""
    params = [patient_id, issuer, name, str(first_value(meta, "00100030", ""))[:8],
              str(first_value(meta, "00100040", ""))[:16]]
    if connection.vendor == "postgresql":
        row = _fetch(_PATIENT_PG_SQL, [*params, patient_id, issuer])
    else:
        row = _fetch(_PATIENT_INSERT_SQL, params)
    return row[0] if row is not None else _fetch(_PATIENT_SQL, [patient_id, issuer])[0]


def _create_study(parsed: Prepared, meta: dict, *, user, modality: str, uid_generated: bool) -> int:
    patient_id = str(first_value(meta, "00100020", ""))[:64]
    issuer = str(first_value(meta, "00100021", ""))[:64]
    name = str(first_value(meta, "00100010", ""))[:324]
    attributes = pick(meta, STUDY_TAGS)
    return _insert(
        Study,
        study_uid=parsed.study_uid, patient_id=_patient_pk(meta, patient_id, issuer, name), patient_name=name,
        patient_name_search=name.replace("^", " ").upper().strip(), patient_identifier=patient_id,
        study_date=str(first_value(meta, "00080020", ""))[:8], study_time=str(first_value(meta, "00080030", ""))[:16],
        accession_number=str(first_value(meta, "00080050", ""))[:16],
        study_id=str(first_value(meta, "00200010", ""))[:16],
        description=str(first_value(meta, "00081030", ""))[:64],
        referring_physician=str(first_value(meta, "00080090", ""))[:324],
        attributes=attributes, uid_generated=uid_generated, owner=user if user is not None else None,
        modalities=modality, num_series=1, num_instances=1,
    ).pk


def _create_series(parsed: Prepared, meta: dict, study_pk: int, modality: str) -> int:
    """A new series holding the instance being stored (its counter set at once)."""
    return _insert(
        Series,
        series_uid=parsed.series_uid, study_id=study_pk, modality=modality,
        series_number=_int(first_value(meta, "00200011", None)),
        description=str(first_value(meta, "0008103E", ""))[:64],
        series_date=str(first_value(meta, "00080021", ""))[:8], series_time=str(first_value(meta, "00080031", ""))[:16],
        body_part=str(first_value(meta, "00180015", ""))[:16], attributes=pick(meta, SERIES_TAGS), num_instances=1,
    ).pk


def _series_for(parsed: Prepared, meta: dict, study_pk: int, modality: str) -> tuple[int, str, bool]:
    """(series pk, modality, created now) for the instance's series, created in the study if new."""
    row = _fetch(_SERIES_SQL, [parsed.series_uid])
    if row is not None:
        series_pk, series_study_pk, series_modality = row
        if series_study_pk != study_pk:
            raise InvalidInstance(f"series {parsed.series_uid} is already stored in another study",
                                  code="conflict", sop_instance_uid=parsed.sop_instance_uid)
        return series_pk, series_modality, False
    return _create_series(parsed, meta, study_pk, modality), modality, True
