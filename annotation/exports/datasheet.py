"""The datasheet of an export: ``README.md`` at the root of the archive (pure: renders a dict as Markdown).

What a reader of the dataset needs without Okapi: where it comes from, the label schema, counts per class and
split, the readers (by pseudonym), agreement, what de-identification was applied, the licence, what could not
be converted and why, and how to load it. Nothing in it depends on when or by whom the export was made, so it
does not change the content hash of an unchanged dataset.
"""

from annotation.exports.hashing import FORMAT

UNSPECIFIED_LICENCE = ("not specified: ask the project lead before sharing or publishing this dataset")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return lines


def _value(estimate: dict | None) -> str:
    if not estimate or estimate.get("value") is None:
        return "n/a"
    low, high = estimate.get("ci_low"), estimate.get("ci_high")
    return f"{estimate['value']:.3f}" + (f" ({low:.3f} to {high:.3f})" if low is not None and high is not None
                                        else "")


def _deidentification(deidentified: bool) -> list[str]:
    if not deidentified:
        return [
            "**Not de-identified.** This export holds identifying data: patient names and IDs, dates, accession "
            "numbers and original UIDs in the DICOM files and in `labels/consensus.*`, and readers' free text. "
            "Keep it inside the environment approved for identified data.",
            "",
            "Readers are still named by pseudonym; case and series folders by pseudonymous IDs.",
        ]
    return [
        "- DICOM files (images and SEG): DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile, "
        "as at ingest (`imaging/dicom/deid.py`): identifying attributes removed, emptied or replaced; UIDs "
        "replaced by keyed hashes (consistent between images and SEGs); private attributes, curves and "
        "overlays removed; Patient Identity Removed = YES. Burned-in text in pixels is **not** removed.",
        "- NIfTI files carry no DICOM header: only the geometry; their paths use pseudonymous case IDs.",
        "- Tables: pseudonymous case IDs, de-identified Study/Series UIDs, no patient attributes, no dates; "
        "readers' free text and read timestamps are left out (free text may name people).",
        "- Readers are named by pseudonym (a keyed hash, stable across versions of this project's exports).",
    ]


def render(info: dict) -> str:
    """The datasheet as Markdown text."""
    project, request, schema = info["project"], info["request"], info["schema"]
    counts = info["counts"]
    out = [f"# {project['name']}: labelled dataset", "",
           f"Exported by Okapi from project {project['id']} ({FORMAT}). "
           "The content hash of this export is the SHA-256 of `manifest.json`, which lists every other file "
           "with its own SHA-256.", ""]
    if project.get("description"):
        out += [project["description"], ""]
    out += ["## Source", "",
            f"- Project: {project['name']} (id {project['id']}), {project['reads_per_case']} reads per case",
            f"- Cases: {'consensus only' if request['cases'] == 'consensus' else 'every case with a submitted read'}"
            f"; schema version {request['schema_version'] or 'any'}; study dates "
            f"{request['date_from'] or 'any'} to {request['date_to'] or 'any'}; series "
            f"{', '.join(request['series_uids']) or 'all'}; modality {request['modality'] or 'any'}",
            f"- Images: {request['images']}; labels as of {info.get('labels_as_of') or 'n/a'}",
            f"- Split: validation {request['split']['validation']}, test {request['split']['test']}, seed "
            f"{request['split']['seed']}, stratified by `{info.get('stratify_by') or 'nothing (no single-choice question)'}`",
            "", "## Layout", "",
            "- `README.md` this datasheet; `manifest.json` every file with SHA-256 and size, the request, and each "
            "series' geometry or the reason it was not converted",
            "- `schema.json` the label schema; `labels/consensus.csv|json` consensus per case; "
            "`reads/reads.csv|json` every reader's read; `agreement.json` agreement statistics",
            "- `datalist.json` MONAI datalist (image, class index); `datalist_segmentation.json` (image, consensus "
            "mask) when the schema has segmentation labels",
            "- `cases/<case>/<series>/image.nii.gz` the series as NIfTI; `dicom/NNNN.dcm` the DICOM files; "
            "`consensus_mask.nii.gz` + `consensus_seg.dcm`; `reads/<reader>_mask.nii.gz` + `<reader>_seg.dcm`",
            "", "## Label schema", "", f"Version {schema['version']}.", ""]
    for q in schema["definition"].get("questions", []):
        options = ", ".join(f"`{o['value']}` {o['label']}" for o in q.get("options", []))
        scale = f"{q.get('min')} to {q.get('max')}" if q["type"] == "ordinal" else ""
        out.append(f"- `{q['key']}` ({q['type']}): {q.get('label', q['key'])}" +
                   (f": {options}" if options else "") + (f": {scale}" if scale else ""))
    for value, name in sorted(info["mask_labels"].items()):
        out.append(f"- mask label {value}: {name}")
    out += ["", "## Counts", "",
            f"- Cases: {counts['cases']}; reads: {counts['reads']}; readers: {counts['readers']}",
            f"- Series converted to NIfTI: {counts['series_converted']}; not converted: "
            f"{counts['series_not_converted']}; DICOM files: {counts['dicom_files']}",
            f"- Consensus masks: {counts['consensus_masks']}; reader masks: {counts['reader_masks']}", ""]
    for key, classes in info["classes"].items():
        out += [f"Consensus of `{key}`:", ""] + _table(["class", "cases"], [[k or "(none)", v] for k, v in
                                                                           classes.items()]) + [""]
    splits = info["splits"]
    classes = sorted({c for split in splits.values() for c in split})
    out += ["Cases per split and class:", ""] + _table(
        ["split"] + [c or "(no class)" for c in classes] + ["total"],
        [[name] + [splits[name].get(c, 0) for c in classes] + [sum(splits[name].values())] for name in splits])
    out += ["", "Readers (pseudonyms):", ""] + _table(["reader", "reads"], [[r["reader"], r["reads"]]
                                                                          for r in info["readers"]])
    agreement = info["agreement"]
    out += ["", "## Agreement", "", f"Over the {agreement['cases']} exported cases with at least two reads "
            "(95% intervals; all figures in `agreement.json`).", ""]
    rows = [[key, s["cases"], _value(s.get("percent_agreement")), _value(s.get("fleiss_kappa")),
             _value(s.get("krippendorff_alpha_ordinal") or s.get("krippendorff_alpha_nominal"))]
            for key, s in agreement["questions"].items()]
    out += _table(["question", "cases", "percent agreement", "Fleiss' kappa", "Krippendorff's alpha"], rows)
    for label, pairs in agreement["masks"].items():
        out.append("")
        out += [f"Masks `{label}`:", ""] + _table(["readers", "cases", "mean Dice", "mean HD95 (mm)"], [
            [" / ".join(p["readers"]), p["cases"], p["dice_mean"], p["hd95_mean"]] for p in pairs])
    out += ["", "## De-identification", ""] + _deidentification(request["deidentified"])
    out += ["", "## Licence", "", request["licence"] or UNSPECIFIED_LICENCE, ""]
    out += ["## Problems", ""]
    out += [f"- `{p['where']}`: {p['code']}: {p['reason']}" for p in info["problems"]] or ["None."]
    out += ["", "## Loading", "", "```python", "from monai.data import load_decathlon_datalist",
            "", 'train = load_decathlon_datalist("datalist.json", is_segmentation=False, data_list_key="training")',
            "# [{'image': '/abs/path/cases/.../image.nii.gz', 'label': 0, 'case': 'case-...'}, ...]", "```", ""]
    return "\n".join(out)
