"""QIDO-RS (PS3.18 §10.6): query parameters to database filters, and index rows to DICOM JSON.

Answers come from the index (columns and the study/series attributes kept at ingest), never from files.
"""

import json
import re
from dataclasses import dataclass, field

from django.db.models import Exists, OuterRef, Q, QuerySet
from pydicom.datadict import dictionary_has_tag, keyword_for_tag, tag_for_keyword

from core.errors import OkapiError
from imaging.dicom.instance import served_transfer_syntax
from imaging.models import Instance, Series, Study

MAX_LIMIT = 10000
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}


@dataclass
class Query:
    filters: list[tuple[str, str]]
    includefields: set[str] = field(default_factory=set)
    include_all: bool = False
    limit: int = MAX_LIMIT
    offset: int = 0
    fuzzy: bool = False
    unsupported: list[str] = field(default_factory=list)


def _tag_key(name: str) -> str:
    """A matching key or includefield as an 8-hex tag: accepts keywords ('PatientID') and tags ('00100020')."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        return name.upper()
    tag = tag_for_keyword(name)
    if tag is None:
        raise OkapiError("invalid_query", f"{name!r} is neither a DICOM keyword nor a tag", detail={"parameter": name})
    return f"{tag:08X}"


def parse_query(params) -> Query:
    """Parse a QueryDict (repeated and comma-separated includefield, keyword or tag matching keys)."""
    query = Query(filters=[])
    for name in params:
        values = params.getlist(name)
        if name == "includefield":
            for value in values:
                for item in filter(None, (v.strip() for v in value.split(","))):
                    if item == "all":
                        query.include_all = True
                    else:
                        query.includefields.add(_tag_key(item))
        elif name == "limit":
            query.limit = min(_non_negative(name, values[-1]), MAX_LIMIT)
        elif name == "offset":
            query.offset = _non_negative(name, values[-1])
        elif name == "fuzzymatching":
            query.fuzzy = values[-1].lower() == "true"
        else:
            key = name.split(".")[0]
            query.filters.extend((_tag_key(key), v) for v in values if v != "")
    return query


def _non_negative(name: str, value: str) -> int:
    if not value.isdigit():
        raise OkapiError("invalid_query", f"{name} must be a non-negative integer, not {value!r}")
    return int(value)


# --- matching ----------------------------------------------------------------------------------------------------


def _wildcard_q(field_name: str, value: str, *, insensitive: bool) -> Q:
    """DICOM wildcard matching (* and ?) on one column."""
    prefix = "i" if insensitive else ""
    if "*" not in value and "?" not in value:
        return Q(**{f"{field_name}__{prefix}exact": value})
    core = value.strip("*")
    if "?" not in core and "*" not in core:
        if value.startswith("*") and value.endswith("*"):
            return Q(**{f"{field_name}__{prefix}contains": core})
        if value.endswith("*"):
            return Q(**{f"{field_name}__{prefix}startswith": core})
        return Q(**{f"{field_name}__{prefix}endswith": core})
    regex = "^" + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value) + "$"
    return Q(**{f"{field_name}__{prefix}regex": regex})


def _uid_list_q(field_name: str, value: str) -> Q:
    uids = [u for u in re.split(r"[\\,]", value) if u]
    return Q(**{f"{field_name}__in": uids})


def _range_q(field_name: str, value: str) -> Q:
    """Date/time range matching: 'a-b', 'a-', '-b' or a single value."""
    clean = value.replace(".", "").replace(":", "")
    if "-" not in clean:
        return Q(**{field_name: clean})
    start, _, end = clean.partition("-")
    condition = Q()
    if start:
        condition &= Q(**{f"{field_name}__gte": start})
    if end:
        condition &= Q(**{f"{field_name}__lte": end + ("235959.999999" if len(end) <= 8 and "time" in field_name else "")})
    return condition


def _name_q(field_name: str, value: str, fuzzy: bool) -> Q:
    normalised = value.replace("^", " ").upper().strip()
    if fuzzy and "*" not in normalised and "?" not in normalised:
        normalised = f"*{normalised}*"
    return _wildcard_q(field_name, normalised, insensitive=True)


def _study_matchers(fuzzy: bool) -> dict:
    return {
        "0020000D": lambda v: _uid_list_q("study_uid", v),
        "00100010": lambda v: _name_q("patient_name_search", v, fuzzy),
        "00100020": lambda v: _wildcard_q("patient_identifier", v, insensitive=False),
        "00080050": lambda v: _wildcard_q("accession_number", v, insensitive=False),
        "00081030": lambda v: _wildcard_q("description", v, insensitive=True),
        "00080020": lambda v: _range_q("study_date", v),
        "00080030": lambda v: _range_q("study_time", v),
        "00200010": lambda v: _wildcard_q("study_id", v, insensitive=False),
        "00080090": lambda v: _name_q("referring_physician", v, fuzzy),
        "00100030": lambda v: _range_q("patient__birth_date", v),
        "00100040": lambda v: _wildcard_q("patient__sex", v, insensitive=True),
        "00080061": lambda v: Q(Exists(Series.objects.filter(
            study=OuterRef("pk"), modality__in=[m for m in re.split(r"[\\,]", v) if m]))),
    }


def _series_matchers(fuzzy: bool) -> dict:
    return {
        "0020000E": lambda v: _uid_list_q("series_uid", v),
        "00080060": lambda v: Q(modality__in=[m for m in re.split(r"[\\,]", v) if m]),
        "00200011": lambda v: Q(series_number=int(v)) if v.lstrip("-").isdigit() else Q(pk__in=[]),
        "0008103E": lambda v: _wildcard_q("description", v, insensitive=True),
        "00080021": lambda v: _range_q("series_date", v),
        "00180015": lambda v: _wildcard_q("body_part", v, insensitive=True),
    }


def _instance_matchers(fuzzy: bool) -> dict:
    return {
        "00080018": lambda v: _uid_list_q("sop_uid", v),
        "00080016": lambda v: _uid_list_q("sop_class_uid", v),
        "00200013": lambda v: Q(instance_number=int(v)) if v.lstrip("-").isdigit() else Q(pk__in=[]),
    }


def _apply(qs: QuerySet, query: Query, levels: list[tuple[str, dict]]) -> QuerySet:
    """Filter ``qs`` with the matchers of each level (prefix = path from qs's model to that level's model)."""
    for tag, value in query.filters:
        for prefix, matchers in levels:
            if tag in matchers:
                condition = matchers[tag](value)
                qs = qs.filter(_prefixed(condition, prefix) if prefix else condition)
                break
        else:
            query.unsupported.append(keyword_for_tag(int(tag, 16)) or tag if dictionary_has_tag(int(tag, 16)) else tag)
    return qs


def _prefixed(condition: Q, prefix: str) -> Q:
    """Re-root a Q built for a parent model (e.g. Study) onto a child queryset (prefix 'study__')."""
    if prefix == "" or not isinstance(condition, Q):
        return condition
    children = []
    for child in condition.children:
        if isinstance(child, Q):
            children.append(_prefixed(child, prefix))
        elif isinstance(child, tuple):
            children.append((prefix + child[0], child[1]))
        else:  # an Exists() over OuterRef('pk'): match through a subquery on the parent instead
            raise OkapiError("invalid_query", "that study-level key cannot be used at this level")
    new = Q(*children, _connector=condition.connector, _negated=condition.negated)
    return new


def search_studies(qs: QuerySet, query: Query) -> QuerySet:
    qs = _apply(qs, query, [("", _study_matchers(query.fuzzy))])
    return qs.select_related(None).order_by("id")


def search_series(qs: QuerySet, query: Query) -> QuerySet:
    qs = _apply(qs, query, [("", _series_matchers(query.fuzzy)), ("study__", _study_matchers(query.fuzzy))])
    return qs.select_related("study").order_by("study_id", "series_number", "id")


def search_instances(qs: QuerySet, query: Query) -> QuerySet:
    qs = _apply(qs, query, [("", _instance_matchers(query.fuzzy)), ("series__", _series_matchers(query.fuzzy)),
                            ("series__study__", _study_matchers(query.fuzzy))])
    return qs.select_related("series__study").order_by("series_id", "instance_number", "id")


# --- answers -----------------------------------------------------------------------------------------------------


def _value(vr: str, value) -> dict:
    return {"vr": vr, "Value": [value]} if value not in (None, "") else {"vr": vr}


def study_json(study: Study, base: str) -> dict:
    data = dict(study.attributes)
    data["0020000D"] = _value("UI", study.study_uid)
    data["00080061"] = {"vr": "CS", "Value": study.modalities.split("\\")} if study.modalities else {"vr": "CS"}
    data["00201206"] = _value("IS", study.num_series)
    data["00201208"] = _value("IS", study.num_instances)
    data["00080056"] = _value("CS", "ONLINE")
    data["00081190"] = _value("UR", f"{base}/studies/{study.study_uid}")
    return data


def series_json(series: Series, base: str) -> dict:
    data = dict(series.attributes)
    data["0020000D"] = _value("UI", series.study.study_uid)
    data["0020000E"] = _value("UI", series.series_uid)
    data["00080060"] = _value("CS", series.modality)
    data["00201209"] = _value("IS", series.num_instances)
    data["00080056"] = _value("CS", "ONLINE")
    data["00081190"] = _value("UR", f"{base}/studies/{series.study.study_uid}/series/{series.series_uid}")
    return data


def instance_json(instance: Instance, base: str, query: Query) -> dict:
    series, study = instance.series, instance.series.study
    data = {
        "00080016": _value("UI", instance.sop_class_uid),
        "00080018": _value("UI", instance.sop_uid),
        "00080056": _value("CS", "ONLINE"),
        "00083002": _value("UI", served_transfer_syntax(instance.transfer_syntax_uid)),
        "0020000D": _value("UI", study.study_uid),
        "0020000E": _value("UI", series.series_uid),
        "00200013": _value("IS", instance.instance_number),
        "00081190": _value("UR", f"{base}/studies/{study.study_uid}/series/{series.series_uid}/instances/"
                                 f"{instance.sop_uid}"),
    }
    if instance.rows:
        data["00280010"] = _value("US", instance.rows)
        data["00280011"] = _value("US", instance.columns)
        data["00280100"] = _value("US", instance.bits_allocated)
    if instance.number_of_frames:
        data["00280008"] = _value("IS", instance.number_of_frames)
    wanted = query.includefields - data.keys()
    if query.include_all or wanted:
        stored = json.loads(instance.metadata)
        for tag, element in stored.items():
            if (query.include_all or tag in wanted) and "BulkDataURI" not in element:
                data.setdefault(tag, element)
    return dict(sorted(data.items()))
