"""DICOMweb routes under /dicomweb, without trailing slashes (as OHIF and dicomweb-client send them)."""

from django.urls import path, re_path

from imaging.dicomweb import views_qido as q
from imaging.dicomweb import views_wado as w
from imaging.dicomweb.common import dicomweb_view
from imaging.dicomweb.stow import stow

S = "<str:study_uid>"
SE = "<str:series_uid>"
I = "<str:sop_uid>"  # noqa: E741


@dicomweb_view(("GET", "POST"))
def study(request, study_uid):
    """GET: retrieve the study's instances. POST: store instances into this study."""
    if request.method == "POST":
        return stow(request, study_uid)
    return w.retrieve_study_view(request, study_uid)


urlpatterns = [
    path("studies", q.studies),
    path("series", q.series),
    path("instances", q.instances),
    path(f"studies/{S}", study),
    path(f"studies/{S}/metadata", w.study_metadata),
    path(f"studies/{S}/rendered", w.rendered),
    path(f"studies/{S}/thumbnail", w.thumbnail),
    path(f"studies/{S}/series", q.series),
    path(f"studies/{S}/instances", q.instances),
    path(f"studies/{S}/series/{SE}", w.retrieve_series),
    path(f"studies/{S}/series/{SE}/metadata", w.series_metadata),
    path(f"studies/{S}/series/{SE}/rendered", w.rendered),
    path(f"studies/{S}/series/{SE}/thumbnail", w.thumbnail),
    path(f"studies/{S}/series/{SE}/instances", q.instances),
    path(f"studies/{S}/series/{SE}/instances/{I}", w.retrieve_instance),
    path(f"studies/{S}/series/{SE}/instances/{I}/metadata", w.instance_metadata),
    path(f"studies/{S}/series/{SE}/instances/{I}/rendered", w.rendered),
    path(f"studies/{S}/series/{SE}/instances/{I}/thumbnail", w.thumbnail),
    path(f"studies/{S}/series/{SE}/instances/{I}/frames/<str:frame_list>", w.frames),
    path(f"studies/{S}/series/{SE}/instances/{I}/frames/<int:frame>/rendered", w.rendered),
    path(f"studies/{S}/series/{SE}/instances/{I}/frames/<int:frame>/thumbnail", w.thumbnail),
    re_path(r"^studies/(?P<study_uid>[^/]+)/series/(?P<series_uid>[^/]+)/instances/(?P<sop_uid>[^/]+)/bulk/(?P<tag_path>.+)$", w.bulk),
]
