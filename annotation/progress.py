"""A project's progress and agreement figures: reads only, a bounded number of queries whatever its size."""

import math
from statistics import median

import numpy as np
from django.db.models import Count
from django.utils import timezone

from annotation.agreement import (
    agreement_with_consensus,
    fleiss_kappa,
    krippendorff_alpha,
    pairwise_cohen_kappa,
    percent_agreement,
)
from annotation.models import Assignment, Case, CaseState, ClaimState, Project, Read, ReadState
from annotation.schema import parse_questions
from annotation.services.claims import active_slot_q
from annotation.services.projects import current_schema


def project_progress(project: Project) -> dict:
    """Cases by state, reads per reader (submitted, drafts, open claims, median seconds), overall median
    seconds per read: four queries."""
    now = timezone.now()
    by_state = dict(Case.objects.filter(project=project).values_list("state").annotate(n=Count("id")))
    cases = {state: by_state.get(state, 0) for state in CaseState.values}
    cases["total"] = sum(by_state.values())
    reads = list(Read.objects.filter(case__project=project)
                 .values_list("reader__username", "state", "time_spent_seconds"))
    claims = dict(Assignment.objects.filter(case__project=project, state=ClaimState.CLAIMED)
                  .filter(active_slot_q(now)).values_list("reader__username").annotate(n=Count("id")))
    per_reader: dict[str, dict] = {}
    for name, state, seconds in reads:
        row = per_reader.setdefault(name, {"reader": name, "submitted": 0, "drafts": 0, "seconds": []})
        row["submitted" if state == ReadState.SUBMITTED else "drafts"] += 1
        if state == ReadState.SUBMITTED:
            row["seconds"].append(seconds)
    for name in claims:
        per_reader.setdefault(name, {"reader": name, "submitted": 0, "drafts": 0, "seconds": []})
    all_seconds = [s for r in per_reader.values() for s in r["seconds"]]
    readers = []
    for name in sorted(per_reader):
        row = per_reader[name]
        seconds = row.pop("seconds")
        readers.append(row | {"claimed": claims.get(name, 0),
                              "median_seconds": round(median(seconds), 1) if seconds else None})
    needed = cases["total"] * project.reads_per_case
    submitted = sum(r["submitted"] for r in readers)
    return {
        "project": project.pk, "reads_per_case": project.reads_per_case, "cases": cases,
        "reads": {"submitted": submitted, "needed": needed, "drafts": sum(r["drafts"] for r in readers),
                  "fraction_done": round(submitted / needed, 4) if needed else 0.0},
        "readers": readers,
        "median_seconds_per_read": round(median(all_seconds), 1) if all_seconds else None,
    }


def _estimate(e) -> dict:
    def num(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)
    return {"value": num(e.value), "ci_low": num(e.ci_low), "ci_high": num(e.ci_high), "n": e.n}


def _encode(value):
    return "|".join(value) if isinstance(value, list) else value


def project_agreement(project: Project) -> dict:
    """Agreement statistics over the cases that have all their reads, per question: percent agreement,
    Fleiss' kappa, Cohen's kappa per reader pair, Krippendorff's alpha (nominal, and ordinal for scales),
    each reader against the consensus; mask agreement (Dice, HD95 per reader pair) from the cases' records."""
    schema = current_schema(project)
    questions = parse_questions(schema.definition) if schema else []
    cases = list(Case.objects.filter(project=project, reads_submitted__gte=project.reads_per_case)
                 .order_by("id").values("id", "state", "consensus", "consensus_detail"))
    index = {c["id"]: i for i, c in enumerate(cases)}
    reads = list(Read.objects.filter(case_id__in=index, state=ReadState.SUBMITTED)
                 .values_list("case_id", "reader__username", "answers"))
    readers = sorted({r[1] for r in reads})
    col = {name: j for j, name in enumerate(readers)}
    out = {"cases": len(cases), "readers": readers, "questions": {}, "masks": _mask_summary(cases)}
    for q in questions:
        table = np.full((len(cases), len(readers)), None, dtype=object)
        for case_id, name, answers in reads:
            if q.key in answers:
                table[index[case_id], col[name]] = _encode(answers[q.key])
        rows = [i for i in range(len(cases)) if sum(v is not None for v in table[i]) >= 2]
        if not rows:
            continue
        table = table[rows]
        stats = {"type": q.type, "cases": len(rows), "percent_agreement": _estimate(percent_agreement(table))}
        complete = [i for i in range(len(table)) if all(v is not None for v in table[i])]
        if complete:
            stats["fleiss_kappa"] = _estimate(fleiss_kappa(table[complete]))
        weights = "quadratic" if q.type == "ordinal" else None
        stats["cohen_kappa"] = [
            {"readers": [a, b], **_estimate(e)}
            for (a, b), e in pairwise_cohen_kappa(table, readers, weights=weights).items()]
        data = _numeric(table.T, q)
        stats["krippendorff_alpha_nominal"] = _estimate(krippendorff_alpha(data, level="nominal", ci=True,
                                                                           n_boot=500))
        if q.type == "ordinal":
            stats["krippendorff_alpha_ordinal"] = _estimate(krippendorff_alpha(data, level="ordinal", ci=True,
                                                                               n_boot=500))
        consensus = [_encode(((cases[rows[i]]["consensus"] or {}).get("answers") or {}).get(q.key))
                     for i in range(len(rows))]
        decided = [i for i, v in enumerate(consensus) if v is not None]
        if decided:
            vs = agreement_with_consensus(table[decided], [consensus[i] for i in decided], readers,
                                          weights=weights)
            stats["reader_vs_consensus"] = [
                {"reader": name, "agreement": _estimate(r.proportion), "kappa": _estimate(r.kappa)}
                for name, r in vs.items()]
        out["questions"][q.key] = stats
    return out


def _numeric(data: np.ndarray, q) -> np.ndarray:
    """Reliability data (readers x cases) as floats for Krippendorff: option index, scale value, NaN missing."""
    codes: dict = {}
    out = np.full(data.shape, np.nan)
    for idx, value in np.ndenumerate(data):
        if value is None:
            continue
        if q.type == "ordinal":
            out[idx] = float(value)
        else:
            out[idx] = codes.setdefault(value, float(len(codes)))
    return out


def _mask_summary(cases: list[dict]) -> dict:
    """Mean Dice and HD95 per segment and reader pair over the cases whose masks were compared."""
    acc: dict = {}
    for c in cases:
        for label, seg in ((c["consensus_detail"] or {}).get("masks", {}).get("segments", {}) or {}).items():
            for pair, m in seg["pairs"].items():
                row = acc.setdefault(label, {}).setdefault(pair, {"dice": [], "hd95": []})
                row["dice"].append(m["dice"])
                if m["hd95"] is not None:
                    row["hd95"].append(m["hd95"])
    return {label: [{"readers": pair.split("|"), "cases": len(v["dice"]),
                     "dice_mean": round(float(np.mean(v["dice"])), 4),
                     "hd95_mean": round(float(np.mean(v["hd95"])), 3) if v["hd95"] else None}
                    for pair, v in pairs.items()] for label, pairs in acc.items()}


def adjudication_queue(project: Project):
    """Cases waiting for an adjudicator, lowest agreement first."""
    return Case.objects.filter(project=project, state=CaseState.ADJUDICATION).order_by("agreement", "id")
