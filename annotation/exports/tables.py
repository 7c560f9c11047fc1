"""The label tables of an export (consensus and reads, as CSV and JSON) and its agreement statistics.

Tables are written row by row as the builder walks the cases, so memory does not grow with the project.
Readers appear only by pseudonym; answers are in their schema form (multiple choice as a list, ``|``-joined in
CSV; yes/no as true/false, ``yes``/``no`` in CSV). Agreement is computed over the exported cases that have at
least two reads, with the statistics of the project's live agreement page (annotation.progress).
"""

import csv
import json

import numpy as np

from annotation.agreement.report import encode_answer, mask_report, question_report
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


class AgreementCollector:
    """Collects answers case by case; :meth:`result` computes agreement per question and mask summaries."""

    def __init__(self, questions: list[Question]):
        self.questions = questions
        self.ratings: dict[str, dict[tuple[str, str], object]] = {q.key: {} for q in questions}
        self.consensus: dict[str, dict[str, object]] = {q.key: {} for q in questions}
        self.details: list[dict] = []
        self.cases: list[str] = []

    def add_case(self, case: str, reads: list[tuple[str, dict]], consensus: dict | None, detail: dict) -> None:
        if len(reads) < 2:
            return
        self.cases.append(case)
        for reader, answers in reads:
            for q in self.questions:
                if answers.get(q.key) is not None:
                    self.ratings[q.key][(case, reader)] = encode_answer(answers[q.key])
        for q in self.questions:
            if consensus and consensus.get(q.key) is not None:
                self.consensus[q.key][case] = encode_answer(consensus[q.key])
        self.details.append(detail)

    def result(self) -> dict:
        readers = sorted({r for ratings in self.ratings.values() for _, r in ratings})
        out = {"cases": len(self.cases), "readers": readers, "questions": {}, "masks": mask_report(self.details)}
        col = {name: j for j, name in enumerate(readers)}
        row = {case: i for i, case in enumerate(self.cases)}
        for q in self.questions:
            table = np.full((len(self.cases), len(readers)), None, dtype=object)
            for (case, reader), value in self.ratings[q.key].items():
                table[row[case], col[reader]] = value
            stats = question_report(q.type, table, readers, [self.consensus[q.key].get(c) for c in self.cases])
            if stats:
                out["questions"][q.key] = stats
        return out
