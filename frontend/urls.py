from django.urls import include, path

from frontend import views

urlpatterns = [
    path("", views.home, name="home"),
    # Radiologists: worklist, reading page, the OHIF viewer (frontend/urls_reading.py)
    path("", include("frontend.urls_reading")),
    # Project leads and data scientists: campaigns, dashboard, adjudication, data (frontend/urls_campaigns.py)
    path("", include("frontend.urls_campaigns")),
]
