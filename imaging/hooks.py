"""What higher apps may do when an instance is stored, registered here so that imaging never imports them.

``annotation`` registers a hook that attaches a reader's DICOM SEG, stored by STOW-RS from the viewer, to the
read they are making. Hooks run inside the transaction that stores the instance: what they write is committed
with it, and a hook that raises ``InvalidInstance`` rejects the instance with its reason (nothing is kept).
"""

from collections.abc import Callable

AfterStore = Callable[..., None]
_after_store: list[AfterStore] = []


def register_after_store(hook: AfterStore) -> None:
    """Add a hook ``hook(instance, prepared, *, user, source)``, called for each newly stored instance (not for
    duplicates) with the Instance row, its file already in storage (``instance.file``), the parsed file's
    description (``imaging.services.prepare.Prepared``; its ``path`` may be gone), the storing user (None for trusted sources: C-STORE, the command line, the
    server's own SEGs) and the ingest source (``stow-rs``, ``upload``, ...)."""
    if hook not in _after_store:
        _after_store.append(hook)


def run_after_store(instance, prepared, *, user, source: str) -> None:
    for hook in _after_store:
        hook(instance, prepared, user=user, source=source)
