"""The train/validation/test split of an export and its MONAI datalists (pure: no Django).

The split is by case (every series and mask of a case land in the same list, so nothing leaks between
training and test), stratified by the case's consensus class of the first single-choice (or yes/no) question,
with a fixed seed: within each class, cases are ordered by SHA-256 of ``"<seed>:<case id>"`` and the first
``round(n * test)`` go to ``test``, the next ``round(n * validation)`` to ``validation``, the rest to
``training``. The same cases and seed always give the same split; a case keeps its rank within its class when
others are added, so a later version moves few cases.

Datalists are the Medical Segmentation Decathlon layout that ``monai.data.load_decathlon_datalist`` reads:
``{"training": [{"image": ..., "label": ...}], "validation": [...], "test": [...]}`` with paths relative to
the datalist file.
"""

import hashlib
from collections import defaultdict
from collections.abc import Mapping

SPLITS = ("training", "validation", "test")
DEFAULT_SPLIT = {"validation": 0.15, "test": 0.15, "seed": 0}
NO_CLASS = ""


def _rank(seed: int, case: str) -> str:
    return hashlib.sha256(f"{seed}:{case}".encode()).hexdigest()


def stratified_split(strata: Mapping[str, str | None], *, validation: float, test: float,
                     seed: int) -> dict[str, str]:
    """Case id -> "training", "validation" or "test". ``strata`` maps each case to its class (None: no class,
    a stratum of its own)."""
    if not (0 <= validation and 0 <= test and validation + test < 1):
        raise ValueError("validation and test are fractions from 0 with a sum below 1")
    groups: dict[str, list[str]] = defaultdict(list)
    for case, stratum in strata.items():
        groups[NO_CLASS if stratum is None else str(stratum)].append(case)
    out = {}
    for stratum in sorted(groups):
        cases = sorted(groups[stratum], key=lambda c: (_rank(seed, c), c))
        n = len(cases)
        n_test = int(round(n * test))
        n_validation = min(int(round(n * validation)), n - n_test)
        for i, case in enumerate(cases):
            out[case] = "test" if i < n_test else "validation" if i < n_test + n_validation else "training"
    return out


def split_counts(splits: Mapping[str, str], strata: Mapping[str, str | None]) -> dict[str, dict[str, int]]:
    """Cases per split and class: {"training": {"A": 10, ...}, ...} (class "" for no class)."""
    counts: dict[str, dict[str, int]] = {name: {} for name in SPLITS}
    for case, split in splits.items():
        stratum = strata.get(case)
        key = NO_CLASS if stratum is None else str(stratum)
        counts[split][key] = counts[split].get(key, 0) + 1
    return {name: dict(sorted(c.items())) for name, c in counts.items()}


def datalist(items: list[dict], splits: Mapping[str, str], **extra) -> dict:
    """A Decathlon datalist: each item ({"case", "image", "label", ...}) in its case's split, in item order;
    ``extra`` top-level keys (name, labels, ...) are kept (MONAI ignores them)."""
    out = dict(extra)
    for name in SPLITS:
        out[name] = [item for item in items if splits.get(item["case"]) == name]
    out["numTraining"] = len(out["training"])
    out["numValidation"] = len(out["validation"])
    out["numTest"] = len(out["test"])
    return out
