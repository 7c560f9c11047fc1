"""The agreement report of a set of cases, as JSON: what the live agreement page and the export's statistics
both show. Pure: the caller gathers answers (any reader names: usernames or pseudonyms) and consensus."""

import math
from collections.abc import Iterable

import numpy as np

from .categorical import fleiss_kappa, pairwise_cohen_kappa, percent_agreement
from .consensus import agreement_with_consensus
from .krippendorff import krippendorff_alpha

BOOTSTRAPS = 500


def encode_answer(value):
    """An answer as one comparable value (a multiple-choice list becomes 'a|b')."""
    return "|".join(str(v) for v in value) if isinstance(value, list) else value


def estimate_json(e) -> dict:
    def num(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)

    return {"value": num(e.value), "ci_low": num(e.ci_low), "ci_high": num(e.ci_high), "n": e.n}


def _numeric(data: np.ndarray, ordinal: bool) -> np.ndarray:
    """Reliability data (readers x cases) as floats for Krippendorff: option code, scale value, NaN missing."""
    codes: dict = {}
    out = np.full(data.shape, np.nan)
    for idx, value in np.ndenumerate(data):
        if value is not None:
            out[idx] = float(value) if ordinal else codes.setdefault(value, float(len(codes)))
    return out


def question_report(question_type: str, table: np.ndarray, readers: list[str],
                    consensus: list | None = None) -> dict | None:
    """Statistics of one question. ``table``: (cases, readers) encoded answers, None where missing;
    ``consensus``: the encoded consensus per case (None where undecided). None when no case has two answers.

    Percent agreement, Fleiss' kappa (cases every reader answered), Cohen's kappa per reader pair (quadratic
    weights for ordinal scales), Krippendorff's alpha (nominal; ordinal too for scales), each reader against
    the consensus; each with its confidence interval."""
    keep = [i for i in range(len(table)) if sum(v is not None for v in table[i]) >= 2]
    if not keep:
        return None
    table = table[keep]
    ordinal = question_type == "ordinal"
    weights = "quadratic" if ordinal else None
    stats = {"type": question_type, "cases": len(keep), "percent_agreement": estimate_json(percent_agreement(table))}
    complete = [i for i in range(len(table)) if all(v is not None for v in table[i])]
    if complete:
        stats["fleiss_kappa"] = estimate_json(fleiss_kappa(table[complete]))
    stats["cohen_kappa"] = [{"readers": [a, b], **estimate_json(e)}
                            for (a, b), e in pairwise_cohen_kappa(table, readers, weights=weights).items()]
    numeric = _numeric(table.T, ordinal)
    stats["krippendorff_alpha_nominal"] = estimate_json(
        krippendorff_alpha(numeric, level="nominal", ci=True, n_boot=BOOTSTRAPS))
    if ordinal:
        stats["krippendorff_alpha_ordinal"] = estimate_json(
            krippendorff_alpha(numeric, level="ordinal", ci=True, n_boot=BOOTSTRAPS))
    kept = [consensus[i] for i in keep] if consensus is not None else []
    decided = [i for i, v in enumerate(kept) if v is not None]
    if decided:
        vs = agreement_with_consensus(table[decided], [kept[i] for i in decided], readers, weights=weights)
        stats["reader_vs_consensus"] = [{"reader": name, "agreement": estimate_json(r.proportion),
                                         "kappa": estimate_json(r.kappa)} for name, r in vs.items()]
    return stats


def mask_report(details: Iterable[dict]) -> dict:
    """Mean Dice and HD95 per segment and reader pair over cases' consensus details (``masks.segments``)."""
    acc: dict = {}
    for detail in details:
        for label, seg in (((detail or {}).get("masks") or {}).get("segments") or {}).items():
            for pair, m in (seg.get("pairs") or {}).items():
                row = acc.setdefault(label, {}).setdefault(pair, {"dice": [], "hd95": []})
                row["dice"].append(m["dice"])
                if m.get("hd95") is not None:
                    row["hd95"].append(m["hd95"])
    return {label: [{"readers": pair.split("|"), "cases": len(v["dice"]),
                     "dice_mean": round(float(np.mean(v["dice"])), 4),
                     "hd95_mean": round(float(np.mean(v["hd95"])), 3) if v["hd95"] else None}
                    for pair, v in sorted(pairs.items())] for label, pairs in sorted(acc.items())}
