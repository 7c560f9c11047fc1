"""De-identification at ingest: DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile.

Applies Table E.1-1 (Basic Profile column, as data in :mod:`imaging.dicom.deid_table`) to a
pydicom dataset in place, recursively through every sequence, plus the rules the table states in
prose: private attributes, curves (50xx,xxxx) and overlays (60xx,xxxx) removed.

Replacement UIDs and patient pseudonyms are a keyed hash (HMAC-SHA256) of the original under the
site secret, so the same original always maps to the same replacement -- across instances, series
and later uploads -- without a mapping table. SEG/SR references to source images therefore stay
consistent once both sides are de-identified with the same secret.

Not implemented (see docs/deidentification.md): the retain-longitudinal-dates, retain-device-identity
and clean-pixel-data options. Burned-in text is NOT removed; instances whose BurnedInAnnotation is
YES are flagged in the report.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field

import pydicom
from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from imaging.dicom.deid_table import (
    CLASS_UID_TAGS,
    DUMMY_FILL_SEQUENCES,
    SAFETY_NET_VRS,
    SR_IDENTIFYING_CONCEPTS,
    resolve_action,
)

__all__ = [
    "DEIDENTIFICATION_METHOD",
    "DeidConfig",
    "DeidReport",
    "deidentify",
    "patient_pseudonym",
    "replacement_uid",
]

DEIDENTIFICATION_METHOD = "Okapi PS3.15 Basic Application Level Confidentiality Profile"
_BASIC_PROFILE_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")

_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
_TEXT_VALUE = 0x0040A160
_CONCEPT_NAME_CODE_SEQUENCE = 0x0040A043

_UID_ROOT_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*\.?$")

# Dummy values for action D, by VR. Text VRs not listed get _DUMMY_TEXT.
_DUMMY_TEXT = "ANONYMIZED"
_DUMMY_BY_VR: dict[str, object] = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
    "UR": "urn:okapi:anonymized",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
}
_BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN", "OB or OW", "US or OW"})
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})


@dataclass(frozen=True)
class DeidConfig:
    """Site settings for de-identification.

    ``secret`` keys every replacement: the same original value always maps to the same replacement
    (consistent across instances, series and later uploads of the same study) and nothing is stored.
    Losing or changing the secret breaks that consistency; leaking it lets anyone holding an
    original UID or patient ID confirm its replacement.
    """

    secret: str
    uid_root: str = "2.25."
    patient_id_prefix: str = "OKAPI-"

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("DeidConfig.secret must be a non-empty site secret")
        if not _UID_ROOT_RE.match(self.uid_root) or len(self.uid_root.rstrip(".")) > 44:
            raise ValueError(f"DeidConfig.uid_root is not a usable UID root: {self.uid_root!r}")


@dataclass
class DeidReport:
    """What :func:`deidentify` did to one instance (keywords, or ``(GGGG,EEEE)`` when unknown)."""

    removed: list[str] = field(default_factory=list)
    emptied: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    uids_replaced: dict[str, str] = field(default_factory=dict)
    burned_in_annotation: bool = False


def _keyed_hash(config: DeidConfig, namespace: str, value: str) -> bytes:
    """HMAC-SHA256 of ``namespace NUL value`` under the site secret."""
    message = namespace.encode("ascii") + b"\x00" + value.encode("utf-8")
    return hmac.new(config.secret.encode("utf-8"), message, hashlib.sha256).digest()


def replacement_uid(original: str, config: DeidConfig) -> str:
    """The replacement for UID ``original``: ``uid_root`` + the decimal of a 128-bit keyed hash.

    Deterministic for a given secret; at most 64 characters (digits are cut to fit a long root).
    """
    root = config.uid_root if config.uid_root.endswith(".") else config.uid_root + "."
    digest = _keyed_hash(config, "uid", original.strip().rstrip("\x00"))
    digits = str(int.from_bytes(digest[:16], "big") or 1)
    return root + digits[: 64 - len(root)]


def patient_pseudonym(original_id: str, config: DeidConfig, namespace: str = "patient-id") -> str:
    """``patient_id_prefix`` + 12 hex characters of the keyed hash of the original identifier."""
    return config.patient_id_prefix + _keyed_hash(config, namespace, original_id.strip()).hex()[:12]


def _label(elem: DataElement) -> str:
    """Keyword of ``elem``, or ``(GGGG,EEEE)`` for private and unknown attributes."""
    if elem.keyword and not elem.tag.is_private:
        return elem.keyword
    return f"({elem.tag.group:04X},{elem.tag.element:04X})"


def _is_curve_or_overlay(group: int) -> bool:
    """Repeating groups 50xx (curves) and 60xx (overlays), even groups only."""
    return group % 2 == 0 and (0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF)


def _dummy_for(vr: str) -> object:
    """A non-zero-length value of VR ``vr`` that carries no information."""
    if vr in _BINARY_VRS:
        return b"\x00" * 8
    return _DUMMY_BY_VR.get(vr, _DUMMY_TEXT)


def _concept(item: Dataset) -> tuple[str, str] | None:
    """(Coding Scheme Designator, Code Value) of an SR content item's concept name, if any."""
    seq = item.get(_CONCEPT_NAME_CODE_SEQUENCE)
    if seq is None or not seq.value:
        return None
    code = seq.value[0]
    return (str(code.get("CodingSchemeDesignator", "")), str(code.get("CodeValue", "")))


class _Deidentifier:
    """One de-identification pass: carries the config, the pseudonym and the report."""

    def __init__(self, config: DeidConfig, pseudonym: str, root: Dataset) -> None:
        self.config = config
        self.pseudonym = pseudonym
        self.root = root
        self.removed: dict[str, None] = {}
        self.emptied: dict[str, None] = {}
        self.replaced: dict[str, None] = {}
        self.uids: dict[str, str] = {}

    # -- primitive actions -------------------------------------------------------------------
    def uid(self, original: str) -> str:
        """Consistent replacement for one UID value; well-known (dictionary) UIDs are kept."""
        original = original.strip().rstrip("\x00")
        if not original or UID(original).type:  # empty, or a standard class/instance/scheme UID
            return original
        if original not in self.uids:
            self.uids[original] = replacement_uid(original, self.config)
        return self.uids[original]

    def replace_uids(self, elem: DataElement) -> None:
        """Replace every value of a UI element (multi-valued ones included)."""
        if elem.value in (None, ""):
            return
        before = list(elem.value) if elem.VM > 1 else [elem.value]
        after = [self.uid(str(value)) for value in before]
        if after != [str(value).strip().rstrip("\x00") for value in before]:
            elem.value = after if elem.VM > 1 else after[0]
            self.replaced[_label(elem)] = None

    def dummy(self, elem: DataElement) -> None:
        """Action D on a non-sequence element."""
        if elem.VR == "UI":
            self.replace_uids(elem)
            return
        elem.value = _dummy_for(elem.VR)
        self.replaced[_label(elem)] = None

    def empty(self, elem: DataElement) -> None:
        """Action Z: zero-length value (an empty sequence for SQ)."""
        elem.value = Sequence() if elem.VR == "SQ" else empty_value_for_VR(elem.VR)
        self.emptied[_label(elem)] = None

    def dummy_fill(self, ds: Dataset) -> None:
        """Replace every text value in ``ds`` (recursively) with a dummy: for identity codes."""
        for elem in list(ds):
            if elem.VR == "SQ":
                for item in elem.value:
                    self.dummy_fill(item)
            elif elem.VR in _TEXT_VRS and elem.value not in (None, ""):
                self.dummy(elem)

    # -- traversal ---------------------------------------------------------------------------
    def recurse(self, elem: DataElement) -> None:
        """Apply the profile to every item of a sequence element."""
        for item in elem.value:
            self.dataset(item)

    def dataset(self, ds: Dataset) -> None:
        """Apply the profile to every element of ``ds``, in place, recursively."""
        identifying_item = _concept(ds) in SR_IDENTIFYING_CONCEPTS
        for tag in list(ds.keys()):
            elem = ds[tag]
            group = elem.tag.group
            if elem.tag.is_private or _is_curve_or_overlay(group):
                self.removed[_label(elem)] = None
                del ds[tag]
                continue
            if elem.tag.element == 0x0000 and group != 0x0002:
                del ds[tag]  # stale group length (retired outside the file meta)
                continue
            if elem.tag == _PATIENT_NAME:
                elem.value = self.pseudonym
                self.replaced[_label(elem)] = None
                continue
            if elem.tag == _PATIENT_ID:
                original = str(elem.value or "").strip()
                if ds is self.root or not original:
                    elem.value = self.pseudonym
                else:  # a nested reference to some patient: that patient's own pseudonym
                    elem.value = patient_pseudonym(original, self.config)
                self.replaced[_label(elem)] = None
                continue
            if elem.tag == _TEXT_VALUE and identifying_item:
                self.dummy(elem)
                continue
            self.element(ds, elem)

    def element(self, ds: Dataset, elem: DataElement) -> None:
        """Apply the resolved table action (or the VR rules) to one element of ``ds``."""
        action = resolve_action(int(elem.tag))
        is_seq = elem.VR == "SQ"
        if action == "X":
            self.removed[_label(elem)] = None
            del ds[elem.tag]
        elif action == "Z":
            self.empty(elem)
        elif action == "D":
            if is_seq and int(elem.tag) in DUMMY_FILL_SEQUENCES:
                for item in elem.value:
                    self.dummy_fill(item)
            elif is_seq:  # keep the structure, de-identify what it holds (see docs)
                self.recurse(elem)
            else:
                self.dummy(elem)
        elif action in ("U", "U*"):
            if is_seq:
                self.recurse(elem)
            elif elem.VR == "UI":
                self.replace_uids(elem)
            else:
                self.dummy(elem)
        elif action == "K":
            if is_seq:
                self.recurse(elem)
        elif is_seq:  # not in the table: keep, but de-identify the items
            self.recurse(elem)
        elif elem.VR == "UI":
            if int(elem.tag) not in CLASS_UID_TAGS:
                self.replace_uids(elem)
        elif elem.VR in SAFETY_NET_VRS and elem.value not in (None, ""):
            self.dummy(elem)


def _pseudonym_source(ds: Dataset) -> tuple[str, str]:
    """(namespace, value) that identifies the patient: Patient ID, else name, else study."""
    for keyword, namespace in (
        ("PatientID", "patient-id"),
        ("PatientName", "patient-name"),
        ("StudyInstanceUID", "study"),
    ):
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            return namespace, value
    return "unknown", ""


def _add_method(ds: Dataset) -> None:
    """Record the de-identification: Patient Identity Removed, method text and code."""
    ds.PatientIdentityRemoved = "YES"
    existing = ds.get(0x00120063)  # De-identification Method element
    if existing is not None and existing.value not in (None, ""):
        values = list(existing.value) if existing.VM > 1 else [str(existing.value)]
        if DEIDENTIFICATION_METHOD not in values:
            values.append(DEIDENTIFICATION_METHOD)
        ds.DeidentificationMethod = values
    else:
        ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    codes = ds.get(0x00120064)  # De-identification Method Code Sequence element
    items = list(codes.value) if codes is not None else []
    if not any(item.get("CodeValue") == _BASIC_PROFILE_CODE[0] for item in items):
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = _BASIC_PROFILE_CODE
        items.append(code)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    ds.LongitudinalTemporalInformationModified = "REMOVED"


def deidentify(ds: pydicom.Dataset, config: DeidConfig) -> DeidReport:
    """De-identify ``ds`` with the PS3.15 Basic Application Level Confidentiality Profile.

    Modifies ds in place (including nested sequences, recursively) and its file_meta
    (MediaStorageSOPInstanceUID follows the new SOPInstanceUID). Patient Name and Patient ID
    both become the pseudonym ``patient_id_prefix + 12 hex`` of the original Patient ID (falling
    back to the name, then the Study Instance UID, when the ID is empty). Every instance UID is
    replaced with :func:`replacement_uid`, wherever it occurs, so references stay linked.
    Pixel data and image geometry are not touched; burned-in text is not removed but
    ``burned_in_annotation`` is set when BurnedInAnnotation is YES.
    """
    burned_in = str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES"
    namespace, source = _pseudonym_source(ds)
    worker = _Deidentifier(config, patient_pseudonym(source, config, namespace), ds)
    worker.dataset(ds)
    if "PatientID" not in ds:
        ds.PatientID = worker.pseudonym
    if "PatientName" not in ds:
        ds.PatientName = worker.pseudonym
    _add_method(ds)

    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        worker.dataset(meta)
        sop_instance_uid = str(ds.get("SOPInstanceUID", "") or "")
        if sop_instance_uid:
            meta.MediaStorageSOPInstanceUID = sop_instance_uid

    return DeidReport(
        removed=list(worker.removed),
        emptied=list(worker.emptied),
        replaced=list(worker.replaced),
        uids_replaced=dict(worker.uids),
        burned_in_annotation=burned_in,
    )
