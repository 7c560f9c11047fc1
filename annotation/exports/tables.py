"""The label tables of an export (consensus and reads, as CSV and JSON) and its agreement statistics.

Tables are written row by row as the builder walks the cases, so memory does not grow with the project.
Readers appear only by pseudonym; answers are in their schema form (multiple choice as a list, ``|``-joined in
CSV; yes/no as true/false, ``yes``/``no`` in CSV). Agreement is computed over the exported cases that have at
least two reads, with the statistics of the project's live agreement page (annotation.progress).
"""

import csv
import json
import math

import numpy as np

from annotation.agreement import (
    agreement_with_consensus,
    fleiss_kappa,
    krippendorff_alpha,
    pairwise_cohen_kappa,
    percent_agreement,
)
from annotation.schema import Question


class JsonArrayWriter:
    """A JSON array written one item at a time (sorted keys, indented: stable bytes)."""

    def __init__(self, path: str):
        self._fh = open(path, "w", encoding="utf-8", newline="\n")
        self._count = 0
        self._fh.write("[")

    def write(self, item: dict) -> None:
        text = json.dumps(item, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
        self._fh.write(("," if self._count else "") + "\n  " + text.replace("\n", "\n  "))
        self._count += 1

    def close(self) -> None:
        self._fh.write("\n]\n" if self._count else "]\n")
        self._fh.close()


class CsvWriter:
    """A CSV file with a fixed header, written a row (a dict) at a time; missing cells are empty."""

    def __init__(self, path: str, columns: list[str]):
        self._fh = open(path, "w", encoding="utf-8", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        self._writer.writeheader()

    def write(self, row: dict) -> None:
        self._writer.writerow({k: "" if v is None else v for k, v in row.items()})

    def close(self) -> None:
        self._fh.close()


def answer_cell(value) -> str:
    """An answer as one CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "|".join(str(v) for v in value)
    return str(value)


def class_of(question: Question | None, answers: dict | None) -> str | None:
    """The stratification class of a case: its consensus answer to ``question`` as text, None if none."""
    if question is None or not answers or answers.get(question.key) is None:
        return None
    return answer_cell(answers[question.key])


def class_index(question: Question, value: str) -> int | None:
    """A class as the integer a classifier learns (its option's position in the schema)."""
    options = [answer_cell(o) for o in (question.options if question.type == "single_choice" else (True, False))]
    return options.index(value) if value in options else None


def pseudonymize_detail(detail: dict, names: dict[str, str]) -> dict:
    """A case's consensus detail with reader usernames (mask pairs ``a|b``) replaced by pseudonyms."""
    detail = json.loads(json.dumps(detail or {}))
    for seg in ((detail.get("masks") or {}).get("segments") or {}).values():
        seg["pairs"] = {"|".join(names.get(n, "reader-unknown") for n in pair.split("|")): v
                        for pair, v in (seg.get("pairs") or {}).items()}
    return detail


def _number(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def _estimate(e) -> dict:
    return {"value": _number(e.value), "ci_low": _number(e.ci_low), "ci_high": _number(e.ci_high), "n": e.n}


class AgreementCollector:
    """Collects answers case by case; :meth:`result` computes agreement per question and mask summaries."""

    def __init__(self, questions: list[Question]):
        self.questions = questions
        self.ratings: dict[str, dict[tuple[str, str], object]] = {q.key: {} for q in questions}
        self.consensus: dict[str, dict[str, object]] = {q.key: {} for q in questions}
        self.masks: dict[str, dict[str, dict[str, list]]] = {}
        self.cases: list[str] = []

    def add_case(self, case: str, reads: list[tuple[str, dict]], consensus: dict | None, detail: dict) -> None:
        if len(reads) < 2:
            return
        self.cases.append(case)
        for reader, answers in reads:
            for q in self.questions:
                if answers.get(q.key) is not None:
                    self.ratings[q.key][(case, reader)] = _encode(answers[q.key])
        for q in self.questions:
            if consensus and consensus.get(q.key) is not None:
                self.consensus[q.key][case] = _encode(consensus[q.key])
        for label, seg in ((detail.get("masks") or {}).get("segments") or {}).items():
            for pair, m in (seg.get("pairs") or {}).items():
                row = self.masks.setdefault(label, {}).setdefault(pair, {"dice": [], "hd95": []})
                row["dice"].append(m["dice"])
                if m.get("hd95") is not None:
                    row["hd95"].append(m["hd95"])

    def result(self) -> dict:
        readers = sorted({r for ratings in self.ratings.values() for _, r in ratings})
        out = {"cases": len(self.cases), "readers": readers, "questions": {}, "masks": {
            label: [{"readers": pair.split("|"), "cases": len(v["dice"]),
                     "dice_mean": round(float(np.mean(v["dice"])), 4),
                     "hd95_mean": round(float(np.mean(v["hd95"])), 3) if v["hd95"] else None}
                    for pair, v in sorted(pairs.items())]
            for label, pairs in sorted(self.masks.items())}}
        for q in self.questions:
            stats = self._question(q, readers)
            if stats:
                out["questions"][q.key] = stats
        return out

    def _question(self, q: Question, readers: list[str]) -> dict | None:
        col = {name: j for j, name in enumerate(readers)}
        table = np.full((len(self.cases), len(readers)), None, dtype=object)
        row = {case: i for i, case in enumerate(self.cases)}
        for (case, reader), value in self.ratings[q.key].items():
            table[row[case], col[reader]] = value
        keep = [i for i in range(len(self.cases)) if sum(v is not None for v in table[i]) >= 2]
        if not keep:
            return None
        table = table[keep]
        stats = {"type": q.type, "cases": len(keep), "percent_agreement": _estimate(percent_agreement(table))}
        complete = [i for i in range(len(table)) if all(v is not None for v in table[i])]
        if complete:
            stats["fleiss_kappa"] = _estimate(fleiss_kappa(table[complete]))
        weights = "quadratic" if q.type == "ordinal" else None
        stats["cohen_kappa"] = [{"readers": [a, b], **_estimate(e)} for (a, b), e in
                                pairwise_cohen_kappa(table, readers, weights=weights).items()]
        numeric = _numeric(table.T, q)
        stats["krippendorff_alpha_nominal"] = _estimate(krippendorff_alpha(numeric, level="nominal", ci=True,
                                                                           n_boot=500))
        if q.type == "ordinal":
            stats["krippendorff_alpha_ordinal"] = _estimate(krippendorff_alpha(numeric, level="ordinal", ci=True,
                                                                               n_boot=500))
        cases = [self.cases[i] for i in keep]
        decided = [i for i, case in enumerate(cases) if case in self.consensus[q.key]]
        if decided:
            vs = agreement_with_consensus(table[decided], [self.consensus[q.key][cases[i]] for i in decided],
                                          readers, weights=weights)
            stats["reader_vs_consensus"] = [{"reader": name, "agreement": _estimate(r.proportion),
                                             "kappa": _estimate(r.kappa)} for name, r in vs.items()]
        return stats


def _encode(value):
    return "|".join(str(v) for v in value) if isinstance(value, list) else value


def _numeric(data: np.ndarray, q: Question) -> np.ndarray:
    """Reliability data (readers x cases) as floats for Krippendorff: option code, scale value, NaN missing."""
    codes: dict = {}
    out = np.full(data.shape, np.nan)
    for idx, value in np.ndenumerate(data):
        if value is None:
            continue
        out[idx] = float(value) if q.type == "ordinal" else codes.setdefault(value, float(len(codes)))
    return out
