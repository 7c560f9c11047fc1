"""Role checks shared by every app's API."""

from rest_framework.permissions import BasePermission

from core.models import Role


def has_role(user, *roles: str) -> bool:
    """True for admins and for users holding one of ``roles``."""
    if user is None or not user.is_authenticated:
        return False
    return user.is_admin or user.role in roles


class IsAdmin(BasePermission):
    message = "only administrators may do this"

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and request.user.is_admin)


class CanIngest(BasePermission):
    """Project leads and admins bring new studies in."""

    message = "only project leads and administrators may upload studies"

    def has_permission(self, request, view):
        return has_role(request.user, Role.LEAD)
