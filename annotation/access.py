"""What project membership grants in the archive, plugged into imaging.access (imaging never imports us).

Membership of a project (any role) grants its cases' studies, and only those. Blinding: a reader's
segmentation (a DICOM SEG series in the study) stays hidden from other members while its case has no
consensus, except from the project's leads and adjudicators.
"""

from django.db.models import Exists, OuterRef, Q

from annotation.models import CaseState, Membership, ProjectRole, ReadVersion


def member_studies(user) -> Q:
    """Studies of the cases of every project ``user`` is a member of."""
    return Q(Exists(Membership.objects.filter(user=user, project__cases__study=OuterRef("pk"))))


def hidden_segmentations(user) -> Q:
    """Series holding other readers' segmentations of cases still without consensus, unless ``user`` leads
    or adjudicates that project."""
    overseen = Membership.objects.filter(user=user, role__in=[ProjectRole.LEAD, ProjectRole.ADJUDICATOR])
    blinded = (ReadVersion.objects.filter(segmentation__series=OuterRef("pk"))
               .exclude(read__case__state=CaseState.CONSENSUS)
               .exclude(read__reader=user)
               .exclude(read__case__project__in=overseen.values("project")))
    return Q(Exists(blinded))
