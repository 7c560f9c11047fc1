"""DICOM SEG: masks to SEG and back, on real series and SEGs of other tools (dcmqi, highdicom).

The data are read in place from ../shared/data/dicom (metadata only: a SEG needs no source pixels).
"""

import copy
import io
import random

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from annotation.segmentation import (
    InvalidSegmentation,
    SegmentSpec,
    masks_to_seg,
    referenced_series_uid,
    referenced_sop_uids,
    seg_segments,
    seg_to_masks,
    sort_source_datasets,
)

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"

# highdicom warns that the phantoms' one-component patient names (e.g. "HEAD") may not be intended
pytestmark = pytest.mark.filterwarnings(
    "ignore:The string .* is unlikely to represent the intended person name"
)


def _read(paths) -> list[Dataset]:
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(paths)]


def _through_bytes(ds: Dataset) -> Dataset:
    """What the archive stores and gives back: a Part 10 file re-read by pydicom."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def _shuffled(datasets: list[Dataset], seed: int = 7) -> list[Dataset]:
    shuffled = list(datasets)
    random.Random(seed).shuffle(shuffled)
    return shuffled


def _sphere_and_box(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    n, rows, columns = shape
    z, y, x = np.mgrid[:n, :rows, :columns]
    sphere = ((z - n // 2) * 6.0) ** 2 + (y - rows // 2) ** 2 + (x - columns // 2) ** 2 < (rows // 6) ** 2
    box = (z >= 2) & (z < 6) & (y >= rows // 8) & (y < rows // 4) & (x >= columns // 8) & (x < columns // 3)
    return sphere, box


SCHEMA = [
    {
        "name": "Lesion",
        "color": "#E31A1C",
        "code": {"scheme": "SCT", "value": "52988006", "meaning": "Lesion"},
        "category": "morphologically_abnormal_structure",
    },
    {"name": "Reference region", "color": "#1f78b4", "code": None},
]


@pytest.fixture(scope="module")
def dicom_dir(shared_data):
    return shared_data / "dicom"


@pytest.fixture(scope="module")
def liver(dicom_dir):
    folder = dicom_dir / "seg_sr" / "dcmqi_liver_ct3slice"
    return pydicom.dcmread(folder / "liver_seg.dcm"), _read((folder / "ct").glob("*.dcm"))


@pytest.fixture(scope="module")
def ct_head(dicom_dir) -> list[Dataset]:
    datasets = _read((dicom_dir / "series" / "ct_head_phantom_philips_ingenuity_28sl").iterdir())
    assert len(datasets) == 28
    return datasets


@pytest.fixture(scope="module")
def mr_subset(dicom_dir) -> list[Dataset]:
    """20 contiguous slices from the middle of the 192-slice oblique sagittal MPRAGE."""
    datasets = _read((dicom_dir / "series" / "mr_brain_sag_mprage_siemens_skyra_192sl").glob("*.dcm"))
    assert len(datasets) == 192
    return sort_source_datasets(datasets)[86:106]


def _repair_identity(ds: Dataset, *, sop_class: bool = True) -> Dataset:
    """What ingest does to this export: empty UIDs taken from the file meta or derived (imaging.dicom.instance)."""
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["okapi-series", str(ds.FrameOfReferenceUID)])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["okapi-study", str(ds.SeriesInstanceUID)])
    if sop_class:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    return ds


@pytest.fixture(scope="module")
def ct_j2k_raw(dicom_dir) -> list[Dataset]:
    return _read((dicom_dir / "series" / "ct_body_siemens_biograph_20sl_j2k").glob("*.dcm"))


# ---------------------------------------------------------------------------------------------------------------
# A SEG of another tool: dcmqi (3D Slicer), liver on 3 CT slices


def test_dcmqi_seg_reads_as_one_nonempty_mask_per_slice(liver):
    seg, ct = liver
    masks = seg_to_masks(seg, ct)
    assert list(masks) == [1]
    mask = masks[1]
    assert mask.dtype == np.bool_ and mask.shape == (3, 512, 512)
    assert all(mask[i].any() for i in range(3))
    # Independently of highdicom: each SEG frame is the mask of the slice its derivation item references.
    order = [ds.SOPInstanceUID for ds in sort_source_datasets(ct)]
    frames = seg.pixel_array
    for group, frame in zip(seg.PerFrameFunctionalGroupsSequence, frames, strict=True):
        uid = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert np.array_equal(mask[order.index(uid)], frame.astype(bool))


def test_dcmqi_seg_segments_and_references(liver):
    seg, ct = liver
    (segment,) = seg_segments(seg)
    assert (segment.number, segment.label) == (1, "Liver")
    assert (segment.code_scheme, segment.code_value, segment.code_meaning) == ("SRT", "T-62000", "Liver")
    assert (segment.category_scheme, segment.category_value, segment.category_meaning) == (
        "SRT",
        "T-D0050",
        "Tissue",
    )
    assert segment.color == "#dd8265"  # Slicer's liver colour (221, 130, 101), stored as CIELab
    assert referenced_series_uid(seg) == ct[0].SeriesInstanceUID
    assert referenced_sop_uids(seg) == {ds.SOPInstanceUID for ds in ct}


def test_dcmqi_mask_round_trips_through_our_seg(liver):
    seg, ct = liver
    masks = seg_to_masks(seg, ct)
    ours = _through_bytes(masks_to_seg(ct, masks, seg_segments(seg)))
    assert ours.SOPClassUID == SEGMENTATION_STORAGE
    assert referenced_series_uid(ours) == ct[0].SeriesInstanceUID
    assert seg_segments(ours) == seg_segments(seg)
    again = seg_to_masks(ours, _shuffled(ct))
    assert np.array_equal(again[1], masks[1])


def test_seg_without_frame_references_is_placed_by_position(liver):
    seg, ct = liver
    stripped = copy.deepcopy(seg)
    for group in stripped.PerFrameFunctionalGroupsSequence:
        del group.DerivationImageSequence
    assert np.array_equal(seg_to_masks(stripped, ct)[1], seg_to_masks(seg, ct)[1])


# ---------------------------------------------------------------------------------------------------------------
# Our SEGs on real series


def test_ct_head_two_segments_make_a_valid_seg_that_round_trips(ct_head):
    specs = SegmentSpec.from_schema(SCHEMA)
    stack = sort_source_datasets(ct_head)
    sphere, box = _sphere_and_box((28, 512, 512))
    seg = masks_to_seg(
        _shuffled(ct_head),
        {1: sphere, 2: box.astype(np.uint8)},
        specs,
        series_number=9005,
        series_description="Read 12 segmentation",
        content_creator="Doe^Jane",
        content_label="READ_12",
    )
    assert type(seg) is Dataset  # a plain dataset, not highdicom's (which holds an SQLite connection)
    seg = _through_bytes(seg)

    assert (
        seg.SOPClassUID == SEGMENTATION_STORAGE
        and seg.file_meta.MediaStorageSOPClassUID == SEGMENTATION_STORAGE
    )
    assert (seg.Modality, seg.SegmentationType) == ("SEG", "BINARY")
    assert (seg.SeriesNumber, seg.SeriesDescription, seg.ContentLabel) == (
        9005,
        "Read 12 segmentation",
        "READ_12",
    )
    assert str(seg.ContentCreatorName) == "Doe^Jane"
    assert seg.StudyInstanceUID == ct_head[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == ct_head[0].FrameOfReferenceUID
    assert seg.SeriesInstanceUID != ct_head[0].SeriesInstanceUID
    assert referenced_series_uid(seg) == ct_head[0].SeriesInstanceUID
    assert referenced_sop_uids(seg) == {ds.SOPInstanceUID for ds in ct_head}
    # Empty frames are omitted: one frame per (slice, segment) that has something drawn.
    assert seg.NumberOfFrames == int(sphere.any(axis=(1, 2)).sum() + box.any(axis=(1, 2)).sum())

    assert seg_segments(seg) == specs
    lesion, reference = seg.SegmentSequence
    assert [item.SegmentAlgorithmType for item in seg.SegmentSequence] == ["MANUAL", "MANUAL"]
    assert (lesion.SegmentLabel, lesion.SegmentedPropertyTypeCodeSequence[0].CodeValue) == (
        "Lesion",
        "52988006",
    )
    assert lesion.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert list(lesion.RecommendedDisplayCIELabValue) == list(
        hd.color.CIELabColor.from_rgb(0xE3, 0x1A, 0x1C).value
    )
    # Without a code the segment is typed by its category (Tissue), as OHIF does
    assert reference.SegmentedPropertyTypeCodeSequence[0].CodeValue == "85756007"
    assert reference.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Tissue"

    masks = seg_to_masks(seg, ct_head)
    assert np.array_equal(masks[1], sphere) and np.array_equal(masks[2], box)
    assert [ds.SOPInstanceUID for ds in stack] == [ds.SOPInstanceUID for ds in sort_source_datasets(ct_head)]


def test_oblique_mr_subset_round_trips(mr_subset):
    specs = SegmentSpec.from_schema(SCHEMA)
    sphere, box = _sphere_and_box((20, 256, 256))
    seg = _through_bytes(masks_to_seg(_shuffled(mr_subset), {1: sphere, 2: box}, specs))
    assert referenced_series_uid(seg) == mr_subset[0].SeriesInstanceUID
    assert referenced_sop_uids(seg) == {ds.SOPInstanceUID for ds in mr_subset}
    masks = seg_to_masks(seg, _shuffled(mr_subset, seed=3))
    assert np.array_equal(masks[1], sphere) and np.array_equal(masks[2], box)


def test_jpeg2000_series_with_repaired_identity(ct_j2k_raw):
    sources = [_repair_identity(copy.deepcopy(ds)) for ds in ct_j2k_raw]
    assert sources[0].file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    mask = np.zeros((20, 512, 512), dtype=bool)
    mask[4:15, 200:320, 180:260] = True
    seg = _through_bytes(masks_to_seg(sources, {1: mask}, [SegmentSpec(1, "Liver", "#dd8265")]))
    assert referenced_series_uid(seg) == sources[0].SeriesInstanceUID
    assert np.array_equal(seg_to_masks(seg, sources)[1], mask)


def test_empty_sop_class_uid_is_refused_clearly(ct_j2k_raw):
    assert ct_j2k_raw[0].SOPClassUID == ""  # as exported: the SOP class is only in the file meta
    sources = [_repair_identity(copy.deepcopy(ds), sop_class=False) for ds in ct_j2k_raw]
    with pytest.raises(InvalidSegmentation) as caught:
        masks_to_seg(sources, {1: np.zeros((20, 512, 512), bool)}, [SegmentSpec(1, "Liver", "#dd8265")])
    assert "empty SOPClassUID" in caught.value.reason and "MediaStorageSOPClassUID" in caught.value.reason


def test_unrepaired_export_is_refused_clearly(ct_j2k_raw):
    with pytest.raises(InvalidSegmentation, match="empty SOPInstanceUID"):
        masks_to_seg(ct_j2k_raw, {1: np.zeros((20, 512, 512), bool)}, [SegmentSpec(1, "Liver", "#dd8265")])


def test_single_multiframe_source(dicom_dir):
    enhanced_ct = pydicom.dcmread(
        dicom_dir / "multiframe_and_codecs_pydicom_data" / "eCT_Supplemental.dcm", stop_before_pixels=True
    )
    assert enhanced_ct.NumberOfFrames == 2
    mask = np.zeros((2, 512, 512), dtype=bool)
    mask[1, 100:200, 150:300] = True
    seg = _through_bytes(masks_to_seg([enhanced_ct], {1: mask}, [SegmentSpec(1, "Nodule", "#ffff00")]))
    assert referenced_sop_uids(seg) == {enhanced_ct.SOPInstanceUID}
    assert np.array_equal(seg_to_masks(seg, [enhanced_ct])[1], mask)


def test_single_slice_series_takes_a_2d_mask(ct_head):
    mask = np.zeros((512, 512), dtype=np.uint8)
    mask[250:300, 200:260] = 1
    seg = _through_bytes(masks_to_seg([ct_head[5]], {1: mask}, [SegmentSpec(1, "Spot", "#00ff00")]))
    back = seg_to_masks(seg, [ct_head[5]])[1]
    assert back.shape == (1, 512, 512) and np.array_equal(back[0], mask.astype(bool))


# ---------------------------------------------------------------------------------------------------------------
# An empty segmentation is a valid answer


def test_all_empty_segmentation_round_trips_to_zeros(ct_head):
    specs = SegmentSpec.from_schema(SCHEMA)
    empty = np.zeros((28, 512, 512), dtype=np.uint8)
    seg = _through_bytes(masks_to_seg(ct_head, {1: empty, 2: empty.astype(bool)}, specs))
    assert seg.NumberOfFrames == 2  # one empty frame per segment on the first slice, not 28 x 2
    assert referenced_sop_uids(seg) == {ds.SOPInstanceUID for ds in ct_head}
    masks = seg_to_masks(seg, ct_head)
    assert set(masks) == {1, 2}
    assert all(mask.shape == (28, 512, 512) and not mask.any() for mask in masks.values())


def test_an_empty_segment_beside_a_drawn_one_reads_as_zeros(ct_head):
    sphere, _ = _sphere_and_box((28, 512, 512))
    seg = _through_bytes(
        masks_to_seg(ct_head, {1: sphere, 2: np.zeros_like(sphere)}, SegmentSpec.from_schema(SCHEMA))
    )
    masks = seg_to_masks(seg, ct_head)
    assert np.array_equal(masks[1], sphere) and not masks[2].any()


# ---------------------------------------------------------------------------------------------------------------
# SEGs written differently: LABELMAP and FRACTIONAL (highdicom as another writer)


@pytest.mark.parametrize("segmentation_type", ["LABELMAP", "FRACTIONAL"])
def test_other_segmentation_types_are_read(mr_subset, segmentation_type):
    specs = SegmentSpec.from_schema(SCHEMA)
    sphere, box = _sphere_and_box((20, 256, 256))
    sphere &= ~box
    if segmentation_type == "LABELMAP":
        pixels = sphere.astype(np.uint8) + 2 * box.astype(np.uint8)
    else:
        pixels = np.stack([sphere, box], axis=-1).astype(np.float32) * 0.8  # >= 0.5: in the segment
    written = hd.seg.Segmentation(
        mr_subset, pixels, segmentation_type, [spec.to_description() for spec in specs], hd.UID(), 1, hd.UID(),
        1, "Other", "Other", "1", "1",
    )  # fmt: skip
    seg = _through_bytes(written)
    assert seg_segments(seg) == specs  # a label map's background segment 0 is not a segment
    masks = seg_to_masks(seg, mr_subset)
    assert np.array_equal(masks[1], sphere) and np.array_equal(masks[2], box)


# ---------------------------------------------------------------------------------------------------------------
# Sorting the source series


def test_sorting_along_the_slice_normal(ct_head, mr_subset):
    ordered = sort_source_datasets(_shuffled(ct_head))
    assert [int(ds.InstanceNumber) for ds in ordered] == list(range(1, 29))
    assert np.all(np.diff([float(ds.ImagePositionPatient[2]) for ds in ordered]) > 0)
    orientation = np.array(mr_subset[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    distances = [float(np.dot(normal, np.array(ds.ImagePositionPatient, dtype=float))) for ds in mr_subset]
    assert np.all(np.diff(distances) > 0)
    assert sort_source_datasets(_shuffled(mr_subset)) == mr_subset


def test_gantry_tilted_slices_sort_along_the_normal_and_round_trip(ct_head):
    """Tilted CT: positions advance along the table (z) while the slice normal leans by the tilt."""
    tilt = np.deg2rad(15.0)
    tilted = []
    for ds in ct_head:
        ds = copy.deepcopy(ds)
        ds.ImageOrientationPatient = [
            1,
            0,
            0,
            0,
            round(float(np.cos(tilt)), 6),
            round(-float(np.sin(tilt)), 6),
        ]
        ds.GantryDetectorTilt = 15
        tilted.append(ds)
    ordered = sort_source_datasets(_shuffled(tilted))
    assert [int(ds.InstanceNumber) for ds in ordered] == list(range(1, 29))
    sphere, box = _sphere_and_box((28, 512, 512))
    seg = _through_bytes(masks_to_seg(tilted, {1: sphere, 2: box}, SegmentSpec.from_schema(SCHEMA)))
    masks = seg_to_masks(seg, _shuffled(tilted))
    assert np.array_equal(masks[1], sphere) and np.array_equal(masks[2], box)


def test_sorting_falls_back_to_instance_number(ct_head):
    without_geometry = [copy.deepcopy(ds) for ds in ct_head]
    for ds in without_geometry:
        del ds.ImagePositionPatient
    ordered = sort_source_datasets(_shuffled(without_geometry))
    assert [int(ds.InstanceNumber) for ds in ordered] == list(range(1, 29))


def test_mixed_series_are_refused(ct_head, mr_subset):
    with pytest.raises(InvalidSegmentation, match="belong to 2 series"):
        sort_source_datasets(ct_head[:3] + mr_subset[:3])
    with pytest.raises(InvalidSegmentation, match="more than once"):
        sort_source_datasets([ct_head[0], ct_head[0]])
    with pytest.raises(InvalidSegmentation, match="no source image"):
        sort_source_datasets([])


# ---------------------------------------------------------------------------------------------------------------
# Errors name the problem


def test_wrong_shape_names_expected_and_got(ct_head):
    with pytest.raises(InvalidSegmentation) as caught:
        masks_to_seg(ct_head, {1: np.zeros((27, 512, 512), bool)}, [SegmentSpec(1, "Lesion", "#ff0000")])
    assert "(27, 512, 512)" in caught.value.reason and "expected (28, 512, 512)" in caught.value.reason


def test_non_binary_values_are_refused(ct_head):
    mask = np.zeros((28, 512, 512), np.uint8)
    mask[10, 10:20, 10:20] = 255
    with pytest.raises(
        InvalidSegmentation, match=r"not binary: it has 100 values other than 0 and 1 \(255\)"
    ):
        masks_to_seg(ct_head, {1: mask}, [SegmentSpec(1, "Lesion", "#ff0000")])
    probability = np.full((28, 512, 512), 0.3)
    with pytest.raises(InvalidSegmentation, match="not binary"):
        masks_to_seg(ct_head, {1: probability}, [SegmentSpec(1, "Lesion", "#ff0000")])


def test_segment_numbers_must_match_the_specs(ct_head):
    specs = SegmentSpec.from_schema(SCHEMA)
    empty = np.zeros((28, 512, 512), bool)
    with pytest.raises(InvalidSegmentation, match=r"unknown segment number\(s\) \[3\]"):
        masks_to_seg(ct_head, {1: empty, 2: empty, 3: empty}, specs)
    with pytest.raises(InvalidSegmentation, match=r"no mask for segment\(s\) 2 \('Reference region'\)"):
        masks_to_seg(ct_head, {1: empty}, specs)
    with pytest.raises(InvalidSegmentation, match="at least one segment"):
        masks_to_seg(ct_head, {}, [])
    with pytest.raises(InvalidSegmentation, match=r"1 to 2 without gaps or repeats, got \[1, 3\]"):
        masks_to_seg(
            ct_head, {1: empty, 3: empty}, [SegmentSpec(1, "A", "#000000"), SegmentSpec(3, "B", "#000000")]
        )


def test_seg_of_another_series_is_refused_naming_the_instances(liver, ct_head):
    seg, _ = liver
    with pytest.raises(InvalidSegmentation) as caught:
        seg_to_masks(seg, ct_head)
    reason = caught.value.reason
    assert "references 3 instance(s) that are not in the source series" in reason
    assert "1.2.392.200103.20080913.113635.2.2009.6.22.21.43.10.23431.1" in reason
    assert referenced_series_uid(seg) in reason


@pytest.mark.parametrize("not_a_seg", ["ct_slice", "empty_dataset"])
@pytest.mark.parametrize(
    "function", ["seg_to_masks", "seg_segments", "referenced_sop_uids", "referenced_series_uid"]
)
def test_a_non_seg_dataset_is_refused(ct_head, not_a_seg, function):
    dataset = ct_head[0] if not_a_seg == "ct_slice" else Dataset()
    call = {
        "seg_to_masks": lambda: seg_to_masks(dataset, ct_head),
        "seg_segments": lambda: seg_segments(dataset),
        "referenced_sop_uids": lambda: referenced_sop_uids(dataset),
        "referenced_series_uid": lambda: referenced_series_uid(dataset),
    }[function]
    with pytest.raises(InvalidSegmentation, match="not a DICOM SEG: its SOPClassUID is") as caught:
        call()
    assert ("CT Image Storage" if not_a_seg == "ct_slice" else "(empty)") in caught.value.reason


def test_segment_specs_are_validated():
    with pytest.raises(InvalidSegmentation, match="'red' is not of the form '#rrggbb'"):
        SegmentSpec(1, "Lesion", "red")
    with pytest.raises(InvalidSegmentation, match="no label"):
        SegmentSpec(1, "  ", "#ff0000")
    with pytest.raises(InvalidSegmentation, match="between 1 and 65535"):
        SegmentSpec(0, "Lesion", "#ff0000")
    with pytest.raises(InvalidSegmentation, match="code needs a scheme, a value and a meaning"):
        SegmentSpec(1, "Lesion", "#ff0000", code_scheme="SCT", code_value="52988006")
    with pytest.raises(InvalidSegmentation, match="segment schema item 2: unknown category 'organ'"):
        SegmentSpec.from_schema(
            [{"name": "A", "color": "#000000"}, {"name": "B", "color": "#000000", "category": "organ"}]
        )
    assert SegmentSpec(1, " Lesion ", "#FF00aa").color == "#ff00aa"
    local = SegmentSpec.from_schema([{"name": "Fibrosis", "color": "#abcdef",
                                      "code": {"scheme": "99OKAPI", "value": "fib-1", "meaning": "Fibrosis"}}])  # fmt: skip
    assert (local[0].number, local[0].code_scheme, local[0].category_meaning) == (1, "99OKAPI", "Tissue")
