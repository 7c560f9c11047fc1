"""QIDO-RS views: search for studies, series and instances (answers from the index)."""

from imaging import selectors
from imaging.dicomweb import qido
from imaging.dicomweb.common import audit, dicomweb_root, dicomweb_view, json_response
from imaging.dicomweb.stow import stow


def _answer(request, rows, query, to_json, *, level: str, study_uid: str = ""):
    base = dicomweb_root(request)
    page = list(rows[query.offset: query.offset + query.limit + 1])
    audit(request, "search", study_uid=study_uid, object_type=level, object_id="",
          query=request.META.get("QUERY_STRING", "")[:500], results=min(len(page), query.limit))
    more = len(page) > query.limit
    data = [to_json(row, base) for row in page[: query.limit]]
    headers = {}
    warnings = []
    if query.unsupported:
        warnings.append(f'299 okapi "The following attributes are not supported as matching keys and were '
                        f'ignored: {", ".join(query.unsupported)}"')
    if more:
        warnings.append('299 okapi "There are additional results that can be requested"')
    if warnings:
        headers["Warning"] = ", ".join(warnings)
    return json_response(data, headers=headers)


@dicomweb_view(("GET", "POST"))
def studies(request):
    """GET: search for studies. POST: store instances (STOW-RS)."""
    if request.method == "POST":
        return stow(request)
    query = qido.parse_query(request.GET)
    rows = qido.search_studies(selectors.studies_for(request.okapi_user), query)
    return _answer(request, rows, query, qido.study_json, level="studies")


@dicomweb_view(("GET",))
def series(request, study_uid: str | None = None):
    query = qido.parse_query(request.GET)
    qs = selectors.series_for(request.okapi_user)
    if study_uid is not None:
        selectors.get_study_for(request.okapi_user, study_uid)
        qs = qs.filter(study__study_uid=study_uid)
    return _answer(request, qido.search_series(qs, query), query, qido.series_json, level="series",
                   study_uid=study_uid or "")


@dicomweb_view(("GET",))
def instances(request, study_uid: str | None = None, series_uid: str | None = None):
    query = qido.parse_query(request.GET)
    qs = selectors.instances_for(request.okapi_user)
    if series_uid is not None:
        selectors.get_series_for(request.okapi_user, study_uid, series_uid)
        qs = qs.filter(series__series_uid=series_uid, series__study__study_uid=study_uid)
    elif study_uid is not None:
        selectors.get_study_for(request.okapi_user, study_uid)
        qs = qs.filter(series__study__study_uid=study_uid)
    return _answer(request, qido.search_instances(qs, query), query,
                   lambda row, base: qido.instance_json(row, base, query), level="instances",
                   study_uid=study_uid or "")
