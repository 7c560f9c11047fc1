"""ASGI entry point: HTTP (REST, DICOMweb, pages) and websockets (live progress).

HTTP runs Django's WSGI handler on a fixed pool of threads (a2wsgi) rather than Django's ASGI handler: the ASGI
handler gives every request a new thread, so database connections are never reused and each request pays for
thread switches between middleware; measured on the DICOMweb frames endpoint that tripled the time per frame.
Request bodies still stream (STOW-RS is read part by part) and websockets stay on Channels.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

get_asgi_application()  # sets Django up before the imports below

from a2wsgi import WSGIMiddleware  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from config.limits import BodySizeLimitMiddleware  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402
from core.consumers import TokenAuthMiddleware  # noqa: E402
from imaging.services.pool import warm_up  # noqa: E402

get_resolver().check()  # imports every view module now, not on the first request (and checks the URLconf)
warm_up()  # ingest worker processes start with the server, not on the first STOW-RS request
http_app = WSGIMiddleware(get_wsgi_application(), workers=settings.OKAPI_WEB_THREADS)

application = ProtocolTypeRouter(
    {
        "http": BodySizeLimitMiddleware(http_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))),
    }
)
