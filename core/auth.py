"""Bearer tokens: creation, revocation and the authentication used by the REST API and DICOMweb."""

import datetime
import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from rest_framework import authentication, exceptions

from core.cache import TTLCache
from core.models import ApiToken, User

TOKEN_PREFIX = "okp_"
# last_used_at is informative; writing it on every DICOMweb frame request would cost a write per frame.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_create(*, user, name: str = "token", expires_at=None) -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns the row and the raw token, which is never stored and shown once."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name[:100], prefix=raw[: len(TOKEN_PREFIX) + 6], digest=_digest(raw), expires_at=expires_at
    )
    return token, raw


def token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke a token at once: the next request that carries it is refused."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    forget_cached_auth()
    return token


def forget_cached_auth() -> None:
    """Drop this process's cached tokens and access answers (after a revocation or a change of access)."""
    _valid_tokens.clear()
    from core.signals import auth_changed

    auth_changed.send(sender=None)


# Every DICOMweb frame request authenticates: one hand-written query instead of an ORM query whose
# compilation alone costs more than the database round trip. Revocation is still checked on every request.
# In the model's field order: Model.from_db expects the values of the named fields in that order.
_USER_FIELDS = tuple(f.attname for f in User._meta.concrete_fields
                     if f.attname in {"id", "username", "role", "is_superuser", "is_staff", "is_active",
                                      "first_name", "last_name", "email"})
_TOKEN_SQL = (
    "SELECT t.id, t.expires_at, t.last_used_at, " + ", ".join(f"u.{f}" for f in _USER_FIELDS)
    + " FROM core_apitoken t JOIN core_user u ON u.id = t.user_id"
    " WHERE t.digest = %s AND t.revoked_at IS NULL"
)


# Valid tokens are remembered for a few seconds per process, so that a viewer's hundreds of frame requests a
# second do not each ask the database. Revoking clears this process's cache at once; other processes stop
# accepting the token within OKAPI_AUTH_CACHE_SECONDS.
_valid_tokens = TTLCache(settings.OKAPI_AUTH_CACHE_SECONDS)


def user_for_token(raw: str):
    """The active user a raw bearer token belongs to, or None (unknown, revoked, expired, inactive user)."""
    if not raw or not raw.startswith(TOKEN_PREFIX):
        return None
    digest = _digest(raw)
    cached = _valid_tokens.get(digest)
    if cached is not None:
        user, expires_at = cached
        if expires_at is None or expires_at > timezone.now():
            return user
    with connection.cursor() as cursor:
        cursor.execute(_TOKEN_SQL, [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    token_id, expires_at, last_used_at = row[:3]
    user = User.from_db(connection.alias, list(_USER_FIELDS), list(row[3:]))
    if not user.is_active:
        return None
    now = timezone.now()
    expires_at, last_used_at = _aware(expires_at), _aware(last_used_at)
    if expires_at is not None and expires_at <= now:
        return None
    if last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION:
        with transaction.atomic():
            ApiToken.objects.filter(pk=token_id).update(last_used_at=now)
    _valid_tokens.put(digest, (user, expires_at))
    return user


def _aware(value):
    """SQLite hands back raw SQL datetimes as strings or naive values: make them comparable with now()."""
    if value is None:
        return None
    if isinstance(value, str):
        from django.utils.dateparse import parse_datetime

        value = parse_datetime(value)
    if timezone.is_naive(value):
        value = timezone.make_aware(value, datetime.UTC)
    return value


def bearer_from_header(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None when there is no bearer header."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """DRF authentication for ``Authorization: Bearer okp_…``."""

    keyword = "Bearer"

    def authenticate(self, request):
        raw = bearer_from_header(request.META.get("HTTP_AUTHORIZATION"))
        if raw is None:
            return None
        user = user_for_token(raw)
        if user is None:
            raise exceptions.AuthenticationFailed("invalid, expired or revoked token")
        return user, raw

    def authenticate_header(self, request):
        return 'Bearer realm="okapi"'


def request_user(request):
    """The user of a plain Django request (DICOMweb views): a bearer token if one is sent, else the session.

    Returns None for an anonymous request or a bad token: a bad token never falls back to the session.
    """
    header = request.META.get("HTTP_AUTHORIZATION")
    raw = bearer_from_header(header)
    if raw is not None:
        return user_for_token(raw)
    if header:
        return None
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active:
        return user
    return None


def user_create(*, username: str, password: str | None, role: str, email: str = "", **extra):
    """Create a user with a role; admins are Django superusers too (admin site)."""
    from core.models import Role

    if role not in Role.values:
        from core.errors import OkapiError

        raise OkapiError("invalid_role", f"unknown role {role!r}; one of {', '.join(Role.values)}")
    User = get_user_model()
    is_admin = role == Role.ADMIN
    user = User(username=username, email=email, role=role, is_staff=is_admin, is_superuser=is_admin, **extra)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    return user
