"""Inter-reader agreement and consensus for annotation campaigns: pure statistics, no Django.

k readers each read N cases. Ratings tables are (n_cases, n_readers) with ``None``/NaN for a reading not
made, except Krippendorff's alpha, which takes Krippendorff's (n_readers, n_units) orientation.

Categorical / ordinal labels (each returns an ``Estimate`` with a confidence interval):
    percent_agreement, cohen_kappa, pairwise_cohen_kappa, fleiss_kappa, krippendorff_alpha
Segmentation masks:
    dice, hausdorff95, pairwise_mask_agreement
Consensus per case, and readers against the consensus:
    majority_vote, multi_choice_vote, ordinal_consensus, mask_majority, mask_staple, case_agreement,
    agreement_with_consensus

Input that the statistics cannot be computed from (wrong shape, unknown option, no usable case) raises
ValueError; a statistic that is mathematically undefined for valid data (a kappa when every reading is
the same category) comes back as nan.
"""

from ._common import Estimate, wilson_interval
from .categorical import cohen_kappa, fleiss_kappa, pairwise_cohen_kappa, percent_agreement
from .consensus import (
    MultiChoiceVote,
    ReaderAgreement,
    StapleResult,
    Vote,
    agreement_with_consensus,
    case_agreement,
    majority_vote,
    mask_majority,
    mask_staple,
    multi_choice_vote,
    ordinal_consensus,
)
from .krippendorff import krippendorff_alpha
from .masks import dice, hausdorff95, pairwise_mask_agreement

__all__ = [
    "Estimate",
    "wilson_interval",
    "percent_agreement",
    "cohen_kappa",
    "pairwise_cohen_kappa",
    "fleiss_kappa",
    "krippendorff_alpha",
    "dice",
    "hausdorff95",
    "pairwise_mask_agreement",
    "Vote",
    "MultiChoiceVote",
    "StapleResult",
    "ReaderAgreement",
    "majority_vote",
    "multi_choice_vote",
    "ordinal_consensus",
    "mask_majority",
    "mask_staple",
    "case_agreement",
    "agreement_with_consensus",
]
