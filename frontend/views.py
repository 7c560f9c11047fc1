"""Browser pages. The start page tells a newcomer where to go."""

import json
from pathlib import Path

from django.conf import settings
from django.shortcuts import render

from imaging.selectors import studies_for


def home(request):
    studies = []
    if request.user.is_authenticated:
        studies = list(studies_for(request.user).order_by("-created_at")[:20])
    return render(request, "frontend/home.html", {
        "studies": studies,
        "demo": _demo_users(),
    })


def _demo_users() -> list[dict]:
    """The demo logins, shown only on a demo installation (made by ``make run``)."""
    path = Path(settings.DATA_DIR) / "demo_users.json"
    return json.loads(path.read_text()) if path.exists() else []
