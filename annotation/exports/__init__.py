"""Exports of labelled datasets: immutable, versioned, content-hashed snapshots of a project.

- ``services``: the request (validated, normalised), who may export what, recording a version (or reusing one)
- ``selection``: which cases, series and reads an export holds; pseudonyms
- ``build``: the build (staging folder, hashes, zip, storage), run by ``annotation.tasks`` or ``okapi export``
- ``cases``: one case's files (NIfTI, DICOM, SEG, masks) and table rows
- ``nifti``, ``datalist``, ``datasheet``, ``hashing``, ``archive``, ``tables``: the pure parts
- ``api``, ``urls``, ``serializers``, ``selectors``: the REST endpoints, download with Range
"""
