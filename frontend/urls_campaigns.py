from django.urls import path
from django.views.generic import RedirectView

from frontend import views_campaigns as v

urlpatterns = [
    path("campaigns/", v.campaign_list, name="campaigns"),
    path("campaigns", RedirectView.as_view(url="/campaigns/")),
    path("campaigns/new", v.campaign_new, name="campaign-new"),
    path("campaigns/<int:project_id>/", v.campaign_dashboard, name="campaign-dashboard"),
    path("campaigns/<int:project_id>", RedirectView.as_view(pattern_name="campaign-dashboard")),
    path("campaigns/<int:project_id>/cases/<int:case_id>/adjudicate", v.campaign_adjudicate,
         name="campaign-adjudicate"),
    path("data/", v.data_page, name="data"),
    path("data", RedirectView.as_view(url="/data/")),
]
