"""Deterministic zip archives written from files on disk, one file at a time (bounded memory).

Entries are written in sorted path order with a fixed timestamp (1980-01-01, the zip epoch), fixed
permissions and a fixed creator system, so that the same files give the same archive bytes. Already
compressed files (``.gz``, ``.dcm`` pixel data is mostly incompressible or encapsulated) are stored; text is
deflated. Zip64 is used where an entry or the archive needs it.
"""

import os
import shutil
import zipfile

FIXED_DATE = (1980, 1, 1, 0, 0, 0)
STORED_SUFFIXES = (".gz", ".dcm", ".zip")
COPY_CHUNK = 1024 * 1024


def _info(name: str, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
    info.create_system = 3  # Unix, whatever system built it
    info.external_attr = 0o100644 << 16
    info.compress_type = zipfile.ZIP_STORED if name.endswith(STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
    info.file_size = size
    return info


def write_zip(root: str, names: list[str], target: str, *, remove: bool = True, on_file=None) -> None:
    """Write the files ``names`` (paths relative to ``root``, '/'-separated) into a new zip at ``target``, in
    sorted order. ``remove`` deletes each file once it is in the archive (disk use stays near one copy);
    ``on_file(index, total)`` is called after each."""
    ordered = sorted(names)
    with zipfile.ZipFile(target, "w", allowZip64=True) as archive:
        for index, name in enumerate(ordered):
            path = os.path.join(root, *name.split("/"))
            size = os.path.getsize(path)
            with open(path, "rb") as source, archive.open(_info(name, size), "w") as out:
                shutil.copyfileobj(source, out, COPY_CHUNK)
            if remove:
                os.unlink(path)
            if on_file is not None:
                on_file(index + 1, len(ordered))
