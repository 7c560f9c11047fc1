"""A project's progress and agreement figures: reads only, a bounded number of queries whatever its size."""

from statistics import median

import numpy as np
from django.db.models import Count
from django.utils import timezone

from annotation.agreement.report import encode_answer, mask_report, question_report
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


def project_agreement(project: Project) -> dict:
    """Agreement statistics over the cases that have all their reads (annotation.agreement.report): per
    question, and mask agreement (Dice, HD95 per reader pair) from the cases' records."""
    schema = current_schema(project)
    questions = parse_questions(schema.definition) if schema else []
    cases = list(Case.objects.filter(project=project, reads_submitted__gte=project.reads_per_case)
                 .order_by("id").values("id", "consensus", "consensus_detail"))
    index = {c["id"]: i for i, c in enumerate(cases)}
    reads = list(Read.objects.filter(case_id__in=index, state=ReadState.SUBMITTED)
                 .values_list("case_id", "reader__username", "answers"))
    readers = sorted({r[1] for r in reads})
    col = {name: j for j, name in enumerate(readers)}
    out = {"cases": len(cases), "readers": readers, "questions": {},
           "masks": mask_report(c["consensus_detail"] for c in cases)}
    for q in questions:
        table = np.full((len(cases), len(readers)), None, dtype=object)
        for case_id, name, answers in reads:
            if q.key in answers:
                table[index[case_id], col[name]] = encode_answer(answers[q.key])
        consensus = [encode_answer(((c["consensus"] or {}).get("answers") or {}).get(q.key)) for c in cases]
        stats = question_report(q.type, table, readers, consensus)
        if stats:
            out["questions"][q.key] = stats
    return out


def adjudication_queue(project: Project):
    """Cases waiting for an adjudicator, lowest agreement first."""
    return Case.objects.filter(project=project, state=CaseState.ADJUDICATION).order_by("agreement", "id")
