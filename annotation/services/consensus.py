"""Consensus of a case's k reads, and adjudication of the cases where the readers disagree.

Per question: majority vote for single choice and yes/no (a tie goes to adjudication), a vote per option for
multiple choice, the median or mean for ordinal scales (as the project says). The case's agreement is the mean
over questions of the share of reader pairs that agree; below the project's threshold, or on a tie, the case
waits for an adjudicator, whose decision becomes the consensus and is recorded as such.
"""

from collections import Counter

from django.db import transaction
from django.utils import timezone

from annotation.agreement import case_agreement, majority_vote, multi_choice_vote, ordinal_consensus
from annotation.models import Adjudication, Case, CaseState, ProjectRole, Read, ReadState
from annotation.schema import SchemaError, parse_questions, validate_read
from annotation.selectors import project_roles
from annotation.services.projects import current_schema
from core.audit import audit_record
from core.errors import OkapiError
from core.events import group_for, send_event_on_commit
from core.models import User


def _question_consensus(question, values: list, ordinal_method: str) -> tuple[object, dict]:
    """(consensus value or None on a tie, detail with votes and agreement) for one question."""
    if question.type == "multiple_choice":
        vote = multi_choice_vote([set(v) for v in values])
        per_option = [case_agreement([o in set(v) for v in values]) for o in question.options]
        return (sorted(vote.selected, key=question.options.index) if not vote.tied else None), {
            "support": {o: vote.support.get(o, 0) for o in question.options}, "tie": bool(vote.tied),
            "agreement": sum(per_option) / len(per_option)}
    if question.type == "ordinal":
        value = ordinal_consensus(values, method=ordinal_method)
        value = int(round(value)) if ordinal_method == "mean" else value
        value = int(value) if float(value).is_integer() else value
        return value, {"votes": _votes(values), "tie": False, "agreement": case_agreement(values),
                       "method": ordinal_method}
    vote = majority_vote(values)
    return (None if vote.tie else vote.value), {"votes": _votes(values), "tie": vote.tie,
                                               "agreement": case_agreement(values)}


def _votes(values: list) -> dict:
    return {str(k).lower() if isinstance(k, bool) else str(k): n for k, n in Counter(values).items()}


def case_evaluate(case: Case) -> Case:
    """Decide a case that has its k submitted reads (called with the case row locked)."""
    reads = list(Read.objects.filter(case=case, state=ReadState.SUBMITTED).select_related("schema"))
    schema = max((r.schema for r in reads), key=lambda s: s.version)
    questions = parse_questions(schema.definition)
    consensus, detail, agreements, ties = {}, {"questions": {}}, [], []
    for q in questions:
        values = [r.answers[q.key] for r in reads if q.key in r.answers]
        if not values:
            continue
        if len(values) == 1:  # k = 1 (or one reader answered an optional question): nothing to agree on
            consensus[q.key] = values[0]
            detail["questions"][q.key] = {"votes": _votes(values), "tie": False, "agreement": None}
            continue
        value, info = _question_consensus(q, values, case.project.ordinal_consensus)
        detail["questions"][q.key] = info
        agreements.append(info["agreement"])
        if value is None:
            ties.append(q.key)
        else:
            consensus[q.key] = value
    from annotation.services import masks as mask_service  # SEG/SimpleITK imports only when needed

    masks = mask_service.case_mask_consensus(case, reads)
    if masks:
        detail["masks"] = masks["detail"]
        if not agreements:
            agreements.append(masks["detail"]["mean_dice"])
    agreement = sum(agreements) / len(agreements) if agreements else 1.0
    reasons = ([f"tie on {', '.join(ties)}"] if ties else []) + (
        [f"agreement {agreement:.2f} below the threshold {case.project.agreement_threshold:.2f}"]
        if agreement < case.project.agreement_threshold else [])
    detail["reasons"] = reasons
    case.agreement = round(agreement, 6)
    case.consensus_detail = detail
    if reasons:
        case.state, case.consensus, case.consensus_source, case.consensus_at = CaseState.ADJUDICATION, None, "", None
    else:
        case.state, case.consensus_source, case.consensus_at = CaseState.CONSENSUS, "majority", timezone.now()
        # The merged mask is stored only now: while the case waits for adjudication it would reveal the reads.
        seg_uid = mask_service.store_consensus_seg(case, reads, masks["consensus"]) if masks else None
        case.consensus = {"answers": consensus, "segmentation": seg_uid}
    case.save()
    send_event_on_commit(group_for("project", case.project_id), {
        "type": "consensus" if case.state == CaseState.CONSENSUS else "adjudication_needed",
        "case": case.pk, "agreement": case.agreement, "reasons": reasons})
    return case


@transaction.atomic
def case_adjudicate(*, case: Case, adjudicator: User, answers: dict | None = None, chosen_read: Read | None = None,
                    note: str = "") -> Adjudication:
    """An adjudicator (or lead) decides a case that has all its reads: their answers, or one reader's read,
    become the consensus, recorded with source "adjudication"."""
    case = Case.objects.select_for_update(of=("self",)).select_related("project", "study").get(pk=case.pk)
    if not project_roles(adjudicator, case.project_id) & {ProjectRole.ADJUDICATOR, ProjectRole.LEAD}:
        raise OkapiError("forbidden", "only an adjudicator or lead of this project may adjudicate", status=403)
    if case.state == CaseState.OPEN:
        raise OkapiError("conflict", f"this case has {case.reads_submitted} of its {case.project.reads_per_case} "
                         "reads: it is adjudicated once all are in", status=409)
    if (answers is None) == (chosen_read is None):
        raise OkapiError("invalid", "give either the decided answers or the read to adopt (chosen_read)")
    if chosen_read is not None:
        if chosen_read.case_id != case.pk or chosen_read.state != ReadState.SUBMITTED:
            raise OkapiError("invalid", "the chosen read is not a submitted read of this case",
                             detail={"chosen_read": chosen_read.pk})
        answers = chosen_read.answers
    try:  # an adjudicator decides the findings; confidence is the readers' to state
        clean = answers if chosen_read is not None else validate_read(
            current_schema(case.project).definition, answers=answers, complete=True, require_confidence=False)
    except SchemaError as exc:
        raise OkapiError("invalid_read", "the decision does not match the project's label schema",
                         detail=exc.errors) from None
    if chosen_read is not None:
        seg_uid = chosen_read.segmentation.sop_uid if chosen_read.segmentation_id else None
    else:  # the decision is on the findings; the readers' masks are merged as for a majority consensus
        from annotation.services import masks as mask_service

        reads = list(Read.objects.filter(case=case, state=ReadState.SUBMITTED).select_related("reader"))
        merged = mask_service.case_mask_consensus(case, reads)
        seg_uid = mask_service.store_consensus_seg(case, reads, merged["consensus"]) if merged else None
    decision = {"answers": clean, "segmentation": seg_uid}
    adjudication = Adjudication.objects.create(case=case, adjudicator=adjudicator, decision=decision,
                                               chosen_read=chosen_read, note=note or "")
    case.state, case.consensus, case.consensus_source = CaseState.CONSENSUS, decision, "adjudication"
    case.consensus_at = timezone.now()
    case.save()
    audit_record(user=adjudicator, action="adjudicate", object_type="case", object_id=str(case.pk),
                 study_uid=case.study.study_uid, detail={"chosen_read": chosen_read.pk if chosen_read else None})
    send_event_on_commit(group_for("project", case.project_id), {
        "type": "adjudicated", "case": case.pk, "adjudicator": adjudicator.username})
    return adjudication
