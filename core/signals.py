"""Signals core sends to the apps above it (which must not be imported from here)."""

from django.dispatch import Signal

# Sent when tokens are revoked or access may have changed: listeners drop what they cached about access.
auth_changed = Signal()
