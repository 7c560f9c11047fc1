"""Label schemas and the validation of reads against them (pure: no database).

A schema definition is JSON::

    {"questions": [
        {"key": "finding", "label": "Finding", "type": "single_choice", "options": ["normal", "pneumonia"]},
        {"key": "signs", "type": "multiple_choice", "options": [{"value": "cons", "label": "Consolidation"}]},
        {"key": "likelihood", "type": "ordinal", "min": 1, "max": 5, "labels": {"1": "benign", "5": "malignant"}},
        {"key": "contrast", "type": "yes_no", "required": false}],
     "segments": [{"name": "Lesion", "color": "#e6194b",
                   "code": {"scheme": "SCT", "value": "52988006", "meaning": "Lesion"}}],
     "free_text": true, "confidence": {"min": 1, "max": 5}}

Every error names the field it is about, so that a form can show it beside that field.
"""

import re
from dataclasses import dataclass

QUESTION_TYPES = ("single_choice", "multiple_choice", "ordinal", "yes_no")
KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_QUESTIONS, MAX_OPTIONS, MAX_SEGMENTS, MAX_FREE_TEXT = 50, 100, 30, 10_000


class SchemaError(ValueError):
    """Invalid schema or read: ``errors`` maps a field path (``questions[0].options``) to its reason."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass(frozen=True)
class Question:
    key: str
    label: str
    type: str
    options: tuple[str, ...] = ()
    option_labels: tuple[str, ...] = ()
    min: int = 0
    max: int = 0
    required: bool = True

    @property
    def categorical(self) -> bool:
        return self.type in {"single_choice", "yes_no"}


def _options(raw, path: str, errors: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_OPTIONS:
        errors[path] = f"a list of 2 to {MAX_OPTIONS} options"
        return (), ()
    values, labels = [], []
    for i, opt in enumerate(raw):
        if isinstance(opt, str):
            value, label = opt, opt
        elif isinstance(opt, dict) and isinstance(opt.get("value"), str):
            value, label = opt["value"], str(opt.get("label") or opt["value"])
        else:
            errors[f"{path}[{i}]"] = "an option is a string or {\"value\": ..., \"label\": ...}"
            continue
        if not value.strip():
            errors[f"{path}[{i}]"] = "an option value may not be empty"
        values.append(value)
        labels.append(label)
    if len(set(values)) != len(values):
        errors[path] = "option values must be distinct"
    return tuple(values), tuple(labels)


def parse_questions(definition: dict) -> list[Question]:
    """The questions of a (valid) definition."""
    return _parse(definition, {})[0]


def _parse(definition, errors: dict) -> tuple[list[Question], dict]:
    if not isinstance(definition, dict):
        errors["schema"] = "a schema is a JSON object with questions and segments"
        return [], errors
    unknown = set(definition) - {"questions", "segments", "free_text", "confidence", "description"}
    if unknown:
        errors["schema"] = f"unknown keys: {', '.join(sorted(unknown))}"
    raw_questions = definition.get("questions", [])
    if not isinstance(raw_questions, list) or len(raw_questions) > MAX_QUESTIONS:
        errors["questions"] = f"a list of at most {MAX_QUESTIONS} questions"
        raw_questions = []
    questions, keys = [], set()
    for i, q in enumerate(raw_questions):
        path = f"questions[{i}]"
        if not isinstance(q, dict):
            errors[path] = "a question is an object with key, label and type"
            continue
        key, qtype = q.get("key"), q.get("type")
        if not isinstance(key, str) or not KEY_RE.match(key):
            errors[f"{path}.key"] = "lower-case letters, digits and _, starting with a letter (max 64)"
        elif key in keys:
            errors[f"{path}.key"] = f"key {key!r} is used twice"
        keys.add(key)
        if qtype not in QUESTION_TYPES:
            errors[f"{path}.type"] = f"one of {', '.join(QUESTION_TYPES)}"
            continue
        options, labels, lo, hi = (), (), 0, 0
        if qtype in {"single_choice", "multiple_choice"}:
            options, labels = _options(q.get("options"), f"{path}.options", errors)
        elif qtype == "yes_no":
            options, labels = ("yes", "no"), ("Yes", "No")
        else:
            lo, hi = q.get("min", 1), q.get("max", 5)
            if not (isinstance(lo, int) and isinstance(hi, int)) or isinstance(lo, bool) or not lo < hi <= lo + 100:
                errors[f"{path}.min"] = "an ordinal scale has integer min < max (at most 100 steps), e.g. 1 to 5"
            if not isinstance(q.get("labels", {}), dict):
                errors[f"{path}.labels"] = "an object of scale value -> label, e.g. {\"1\": \"benign\"}"
        questions.append(Question(key=str(key), label=str(q.get("label") or key), type=qtype, options=options,
                                  option_labels=labels, min=lo, max=hi, required=bool(q.get("required", True))))
    segments = definition.get("segments", [])
    if not isinstance(segments, list) or len(segments) > MAX_SEGMENTS:
        errors["segments"] = f"a list of at most {MAX_SEGMENTS} segmentation labels"
        segments = []
    names = set()
    for i, seg in enumerate(segments):
        path = f"segments[{i}]"
        if not isinstance(seg, dict) or not isinstance(seg.get("name"), str) or not seg["name"].strip():
            errors[f"{path}.name"] = "a segmentation label has a name"
            continue
        if seg["name"] in names:
            errors[f"{path}.name"] = f"label {seg['name']!r} is used twice"
        names.add(seg["name"])
        if not isinstance(seg.get("color"), str) or not COLOR_RE.match(seg["color"]):
            errors[f"{path}.color"] = "a colour as #rrggbb"
        code = seg.get("code")
        if code is not None and not (isinstance(code, dict) and all(
                isinstance(code.get(k), str) and code[k].strip() for k in ("scheme", "value", "meaning"))):
            errors[f"{path}.code"] = "a code has scheme (e.g. SCT), value and meaning, or is left out"
    confidence = definition.get("confidence", False)
    if confidence not in (True, False) and not (
            isinstance(confidence, dict) and isinstance(confidence.get("min"), int)
            and isinstance(confidence.get("max"), int) and confidence["min"] < confidence["max"]):
        errors["confidence"] = "true, false or {\"min\": 1, \"max\": 5}"
    if not questions and not segments and "questions" not in errors:
        errors["questions"] = "a schema asks at least one question or has one segmentation label"
    return questions, errors


def validate_definition(definition) -> dict:
    """The definition, normalised (question options as values); raises SchemaError with every problem."""
    questions, errors = _parse(definition, {})
    if errors:
        raise SchemaError(errors)
    normal = dict(definition)
    normal["questions"] = [_question_json(q, raw) for q, raw in zip(questions, definition.get("questions", []),
                                                                      strict=True)]
    normal.setdefault("segments", [])
    normal.setdefault("free_text", False)
    normal.setdefault("confidence", False)
    return normal


def _question_json(q: Question, raw: dict) -> dict:
    out = {"key": q.key, "label": q.label, "type": q.type, "required": q.required}
    if q.type in {"single_choice", "multiple_choice"}:
        out["options"] = [{"value": v, "label": lab} for v, lab in zip(q.options, q.option_labels, strict=True)]
    elif q.type == "ordinal":
        out |= {"min": q.min, "max": q.max, "labels": {str(k): str(v) for k, v in (raw.get("labels") or {}).items()}}
    return out


def confidence_range(definition: dict) -> tuple[int, int] | None:
    conf = definition.get("confidence", False)
    if conf is True:
        return (1, 5)
    if isinstance(conf, dict):
        return (conf["min"], conf["max"])
    return None


def validate_read(definition: dict, *, answers, confidence=None, free_text: str = "",
                  complete: bool, require_confidence: bool = True) -> dict:
    """Answers checked against the schema; ``complete`` (a submit, not a draft) also requires every required
    question. Returns the answers normalised (yes/no as booleans); raises SchemaError naming each field."""
    questions = parse_questions(definition)
    errors = {}
    if not isinstance(answers, dict):
        raise SchemaError({"answers": "an object of question key -> answer"})
    by_key = {q.key: q for q in questions}
    for key in answers:
        if key not in by_key:
            errors[f"answers.{key}"] = "not a question of this schema"
    out = {}
    for q in questions:
        path = f"answers.{q.key}"
        if q.key not in answers or answers[q.key] is None:
            if complete and q.required:
                errors[path] = "required"
            continue
        value = answers[q.key]
        if q.type == "single_choice":
            if not isinstance(value, str) or value not in q.options:
                errors[path] = f"one of {', '.join(q.options)}"
                continue
        elif q.type == "yes_no":
            if value in ("yes", "no"):
                value = value == "yes"
            if not isinstance(value, bool):
                errors[path] = "true or false (yes or no)"
                continue
        elif q.type == "multiple_choice":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                errors[path] = "a list of options"
                continue
            bad = [v for v in value if v not in q.options]
            if bad:
                errors[path] = f"not options of this question: {', '.join(bad)}"
                continue
            value = sorted(set(value), key=q.options.index)
        else:
            if isinstance(value, bool) or not isinstance(value, int) or not q.min <= value <= q.max:
                errors[path] = f"an integer from {q.min} to {q.max}"
                continue
        out[q.key] = value
    conf = confidence_range(definition)
    if confidence is not None:
        if conf is None:
            errors["confidence"] = "this schema does not ask for confidence"
        elif isinstance(confidence, bool) or not isinstance(confidence, int) or not conf[0] <= confidence <= conf[1]:
            errors["confidence"] = f"an integer from {conf[0]} to {conf[1]}"
    elif complete and conf is not None and require_confidence:
        errors["confidence"] = "required"
    if free_text:
        if not definition.get("free_text"):
            errors["free_text"] = "this schema has no free text"
        elif not isinstance(free_text, str) or len(free_text) > MAX_FREE_TEXT:
            errors["free_text"] = f"text of at most {MAX_FREE_TEXT} characters"
    if errors:
        raise SchemaError(errors)
    return out
