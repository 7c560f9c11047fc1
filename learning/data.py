"""From campaign cases to arrays: a case's image from the archive, its consensus label as a class index."""

import numpy as np
import pydicom

from annotation.models import Case, CaseState
from annotation.schema import parse_questions
from annotation.services.projects import current_schema
from core.errors import OkapiError
from imaging import storage
from imaging.dicom.instance import NON_IMAGE_SOP_CLASSES
from imaging.models import Instance


def target_classes(project, target: str) -> list[str]:
    """The class names of the question a project learns (single choice or yes/no), in label order."""
    schema = current_schema(project)
    question = next((q for q in parse_questions(schema.definition) if q.key == target), None) if schema else None
    if question is None or question.type not in {"single_choice", "yes_no"}:
        raise OkapiError("invalid", f"the learned target must be a single-choice or yes/no question of the "
                         f"project's schema, not {target!r}", detail={"target": target})
    return ["no", "yes"] if question.type == "yes_no" else list(question.options)


def label_index(value, classes: list[str]) -> int | None:
    """A consensus answer as a class index (yes/no answers are booleans)."""
    if isinstance(value, bool):
        value = "yes" if value else "no"
    return classes.index(value) if value in classes else None


def _pixels(ds: pydicom.Dataset) -> np.ndarray:
    arr = ds.pixel_array.astype(np.float32)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    arr = arr * slope + intercept
    if arr.ndim == 3 and arr.shape[-1] == 3 and ds.get("SamplesPerPixel", 1) == 3:
        arr = arr.mean(axis=-1)  # colour to grey
    elif arr.ndim == 4:  # multi-frame colour
        arr = arr.mean(axis=-1)
    return arr


def case_image(case: Case, spatial_dims: int) -> np.ndarray:
    """The case's image as float32: 2D, the middle slice (or frame) of its image series; 3D, the stack of
    slices in instance order (a multi-frame image's frames)."""
    qs = Instance.objects.filter(series__study_id=case.study_id).exclude(sop_class_uid__in=NON_IMAGE_SOP_CLASSES)
    if case.series_id:
        qs = qs.filter(series_id=case.series_id)
    instances = list(qs.filter(rows__isnull=False).order_by("series__series_number", "series_id",
                                                           "instance_number", "id"))
    if not instances:
        raise OkapiError("no_image", f"case {case.pk} has no image to learn from")
    series_id = instances[0].series_id
    instances = [i for i in instances if i.series_id == series_id]
    if spatial_dims == 2:
        chosen = instances[len(instances) // 2]
        with storage.open_file(chosen.file) as fh:
            arr = _pixels(pydicom.dcmread(fh))
        return arr[arr.shape[0] // 2] if arr.ndim == 3 else arr
    slices = []
    for inst in instances:
        with storage.open_file(inst.file) as fh:
            arr = _pixels(pydicom.dcmread(fh))
        slices.extend(arr if arr.ndim == 3 else [arr])
    return np.stack(slices)


def labelled_cases(project, target: str) -> tuple[list[Case], list[int], list[str]]:
    """Cases with a consensus answer to the target question, their class indices, and the class names."""
    classes = target_classes(project, target)
    cases, labels = [], []
    for case in Case.objects.filter(project=project, state=CaseState.CONSENSUS).order_by("id"):
        label = label_index(((case.consensus or {}).get("answers") or {}).get(target), classes)
        if label is not None:
            cases.append(case)
            labels.append(label)
    return cases, labels, classes


def unlabelled_cases(project) -> list[Case]:
    """Cases still waiting for reads: what a round ranks."""
    return list(Case.objects.filter(project=project, state=CaseState.OPEN).order_by("id"))
