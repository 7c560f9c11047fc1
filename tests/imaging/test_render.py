"""Tests for imaging.dicom.render: DICOMweb rendered/thumbnail images from stored instances.

Real files come from the shared data set (../shared/data/dicom, see its MANIFEST.md); synthetic ones
are built with pydicom in tmp_path. Plain pytest, no Django.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from imaging.dicom.render import RenderError, RenderOptions, fit_viewport, parse_render_query, render_frame

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("OKAPI_SHARED_DATA", ROOT.parent / "shared" / "data")) / "dicom"
CODECS = DATA / "multiframe_and_codecs_pydicom_data"
SR = DATA / "seg_sr" / "highdicom_small" / "sr_document.dcm"
LIVER_SEG = DATA / "seg_sr" / "dcmqi_liver_ct3slice" / "liver_seg.dcm"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")


def _image_files() -> list[Path]:
    if not DATA.is_dir():
        return []
    return sorted(p for p in DATA.rglob("*") if p.is_file() and p != SR and p.suffix != ".md")


def _expected_size(columns: int, rows: int, viewport: tuple[int, int]) -> tuple[int, int]:
    """Independent fit: largest size inside viewport with the image's aspect ratio."""
    if columns * viewport[1] >= rows * viewport[0]:  # width-limited
        return viewport[0], max(1, round(rows * viewport[0] / columns))
    return max(1, round(columns * viewport[1] / rows)), viewport[1]


def _open(data: bytes, fmt: str) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == fmt
    return image


def _synthetic(
    tmp_path: Path,
    values: list[int],
    *,
    photometric: str = "MONOCHROME2",
    signed: bool = False,
    **attrs: object,
) -> Path:
    """A 1 x len(values) 16-bit single-frame secondary capture written to tmp_path."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = 1, len(values)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = int(signed)
    ds.PixelData = np.asarray(values, dtype=np.int16 if signed else np.uint16).tobytes()
    for key, value in attrs.items():
        setattr(ds, key, value)
    path = tmp_path / f"synthetic_{generate_uid()[-8:]}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _grey_levels(path: Path | io.BytesIO, options: RenderOptions | None = None, frame: int = 1) -> list[int]:
    data, media_type = render_frame(path, frame, options or RenderOptions(media_type="image/png"))
    assert media_type == "image/png"
    return np.asarray(_open(data, "PNG")).ravel().tolist()


# --- every real file ------------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize("path", _image_files(), ids=lambda p: str(p.relative_to(DATA)))
def test_every_image_file_renders_as_jpeg_and_png(path: Path) -> None:
    header = pydicom.dcmread(path, stop_before_pixels=True)
    frames = int(header.get("NumberOfFrames") or 1)
    viewport = (128, 96)
    expected = _expected_size(header.Columns, header.Rows, viewport)
    for frame in sorted({1, frames}):
        jpeg, jpeg_type = render_frame(path, frame, RenderOptions(viewport=viewport))
        png, png_type = render_frame(path, frame, RenderOptions(media_type="image/png", viewport=viewport))
        assert (jpeg_type, png_type) == ("image/jpeg", "image/png")
        assert _open(jpeg, "JPEG").size == expected
        assert _open(png, "PNG").size == expected


def test_image_files_found() -> None:
    if DATA.is_dir():
        assert len(_image_files()) >= 250


@needs_data
def test_full_size_without_viewport_and_transfer_syntaxes_agree() -> None:
    renders = [_grey_levels(DATA / "transfer_syntaxes" / "dcm_qa_ts" / f"{n}.dcm") for n in range(1, 10)]
    assert len(renders[0]) == 384 * 384
    assert all(r == renders[0] for r in renders[1:])  # same slice in 9 transfer syntaxes, lossless


@needs_data
def test_colour_and_palette_render_as_rgb() -> None:
    for name in ("color3d_jpeg_baseline.dcm", "OBXXXX1A_rle_2frame.dcm"):
        data, _ = render_frame(CODECS / name, 1, RenderOptions(media_type="image/png"))
        image = _open(data, "PNG")
        assert image.mode == "RGB"
        pixels = np.asarray(image).astype(int)
        assert (pixels[..., 0] != pixels[..., 2]).any()  # really colour, not grey in RGB


@needs_data
def test_frames_of_multiframe_differ() -> None:
    first = render_frame(CODECS / "color3d_jpeg_baseline.dcm", 1, RenderOptions(media_type="image/png"))[0]
    later = render_frame(CODECS / "color3d_jpeg_baseline.dcm", 60, RenderOptions(media_type="image/png"))[0]
    assert first != later


@needs_data
def test_seg_binary_frame_is_black_and_white_mask() -> None:
    levels = set(_grey_levels(LIVER_SEG, frame=2))
    assert levels == {0, 255}


@needs_data
def test_enhanced_ct_uses_per_frame_rescale_and_window() -> None:
    ds = pydicom.dcmread(CODECS / "eCT_Supplemental.dcm")
    raw = pydicom.pixels.pixel_array(ds, index=0).astype(float)
    hu = raw - 1024.0  # per-frame PixelValueTransformationSequence
    expected = np.clip((hu - (49 - 0.5)) / (102 - 1) + 0.5, 0, 1) * 255  # per-frame window 49/102
    got = np.asarray(_grey_levels(CODECS / "eCT_Supplemental.dcm")).reshape(raw.shape)
    assert np.abs(got - np.rint(expected)).max() <= 1


@needs_data
def test_file_object_input(tmp_path: Path) -> None:
    with open(DATA / "transfer_syntaxes" / "dcm_qa_ts" / "3.dcm", "rb") as f:  # big endian
        data, media_type = render_frame(f, 1, RenderOptions(viewport=(64, 64)))
    assert media_type == "image/jpeg" and _open(data, "JPEG").size == (64, 64)


# --- errors ---------------------------------------------------------------------------------------------


@needs_data
def test_sr_has_no_pixel_data() -> None:
    with pytest.raises(RenderError, match=r"instance has no pixel data \(SR document\)"):
        render_frame(SR, 1, RenderOptions())


@needs_data
@pytest.mark.parametrize(
    "name",
    [
        "transfer_syntaxes/dcm_qa_ts/1.dcm",
        "transfer_syntaxes/dcm_qa_ts/7.dcm",
        "transfer_syntaxes/dcm_qa_ts/9.dcm",
        "multiframe_and_codecs_pydicom_data/color3d_jpeg_baseline.dcm",
        "seg_sr/dcmqi_liver_ct3slice/liver_seg.dcm",
    ],
)
@pytest.mark.parametrize("keep", [0.5, 0.999, 1000, 100])
def test_truncated_file_raises_render_error(tmp_path: Path, name: str, keep: float) -> None:
    data = (DATA / name).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: int(len(data) * keep) if keep < 1 else int(keep)])
    with pytest.raises(RenderError):
        render_frame(cut, 1, RenderOptions())


def test_not_dicom_raises_render_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"this is not a DICOM file" * 20)
    with pytest.raises(RenderError):
        render_frame(junk, 1, RenderOptions())


def test_frame_out_of_range_and_bad_options(tmp_path: Path) -> None:
    path = _synthetic(tmp_path, [0, 1])
    with pytest.raises(RenderError, match="out of range"):
        render_frame(path, 2, RenderOptions())
    with pytest.raises(RenderError, match="out of range"):
        render_frame(path, 0, RenderOptions())
    with pytest.raises(RenderError, match="unsupported media type image/gif"):
        render_frame(path, 1, RenderOptions(media_type="image/gif"))
    with pytest.raises(RenderError, match="invalid window"):
        render_frame(path, 1, RenderOptions(window=(10, 0, "linear")))
    with pytest.raises(RenderError, match="invalid window"):
        render_frame(path, 1, RenderOptions(window=(10, 10, "cubic")))


# --- windowing on synthetic images ----------------------------------------------------------------------


def test_explicit_window_maps_edges_to_black_and_white(tmp_path: Path) -> None:
    path = _synthetic(tmp_path, [0, 200, 100, 1000])  # center 100, width 200: 0 -> black, 200 -> white
    for function in ("linear", "linear_exact"):
        levels = _grey_levels(path, RenderOptions(media_type="image/png", window=(100, 200, function)))
        assert levels[0] == 0 and levels[1] == 255 and levels[3] == 255
        assert 126 <= levels[2] <= 129
    sigmoid = _grey_levels(path, RenderOptions(media_type="image/png", window=(100, 200, "sigmoid")))
    assert sigmoid[:3] == [30, 225, 128]  # 255 / (1 + exp(-4 (x - c) / w)): +-w/2 -> e^+-2


def test_file_window_after_rescale(tmp_path: Path) -> None:
    path = _synthetic(
        tmp_path,
        [1000, 1200],
        RescaleSlope=1,
        RescaleIntercept=-1000,
        WindowCenter=[100, 40],
        WindowWidth=[200, 400],
    )  # first window value wins
    assert _grey_levels(path) == [0, 255]


def test_window_option_overrides_file_window(tmp_path: Path) -> None:
    path = _synthetic(tmp_path, [0, 200], WindowCenter=5000, WindowWidth=10)
    assert _grey_levels(path) == [0, 0]
    assert _grey_levels(path, RenderOptions(media_type="image/png", window=(100, 200, "linear"))) == [0, 255]


def test_voi_lut_sequence_when_no_window(tmp_path: Path) -> None:
    lut = Dataset()
    lut.LUTDescriptor = [4, 10, 16]  # 4 entries from 10; 16 bits declared, 12 used
    lut.add_new("LUTData", "US", [0, 1000, 2000, 4095])
    path = _synthetic(tmp_path, [0, 10, 11, 12, 13, 99], VOILUTSequence=[lut])
    assert _grey_levels(path) == [0, 0, 62, 125, 255, 255]


def test_signed_pixels_and_min_max_fallback(tmp_path: Path) -> None:
    path = _synthetic(tmp_path, [-500, 500, 0], signed=True)
    assert _grey_levels(path) == [0, 255, 128]


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    mono2 = _synthetic(tmp_path, [0, 200], WindowCenter=100, WindowWidth=200)
    mono1 = _synthetic(tmp_path, [0, 200], photometric="MONOCHROME1", WindowCenter=100, WindowWidth=200)
    assert _grey_levels(mono2) == [0, 255]
    assert _grey_levels(mono1) == [255, 0]


def test_enhanced_per_frame_window(tmp_path: Path) -> None:
    path = _synthetic(tmp_path, [0, 200, 0, 200], NumberOfFrames=2)
    ds = pydicom.dcmread(path)
    ds.Columns = 2
    frames = []
    for center, intercept in ((100, 0), (0, -100)):  # frame 2: rescaled to -100, 100 -> window 0/200
        voi, pvt, item = Dataset(), Dataset(), Dataset()
        voi.WindowCenter, voi.WindowWidth = center, 200
        pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 1, intercept, "US"
        item.FrameVOILUTSequence, item.PixelValueTransformationSequence = [voi], [pvt]
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.save_as(path)
    assert _grey_levels(path, frame=1) == [0, 255]
    assert _grey_levels(path, frame=2) == [0, 255]
    assert _grey_levels(path, RenderOptions(media_type="image/png", window=(200, 2, "linear")), frame=2) == [
        0,
        0,
    ]


# --- viewport -------------------------------------------------------------------------------------------


def test_viewport_keeps_aspect_ratio(tmp_path: Path) -> None:
    path = _synthetic(tmp_path, [0, 100, 200, 300])  # 4 wide, 1 high
    data, _ = render_frame(path, 1, RenderOptions(viewport=(100, 100)))
    assert _open(data, "JPEG").size == (100, 25)
    data, _ = render_frame(path, 1, RenderOptions(viewport=(40, 200), media_type="image/png"))
    assert _open(data, "PNG").size == (40, 10)
    assert fit_viewport(640, 480, (128, 128)) == (128, 96)
    assert fit_viewport(480, 640, (128, 128)) == (96, 128)
    assert fit_viewport(512, 512, (200, 100)) == (100, 100)
    assert fit_viewport(5000, 2, (10, 10)) == (10, 1)
    assert fit_viewport(64, 32, None) == (64, 32)


@needs_data
def test_color_viewport() -> None:
    data, _ = render_frame(CODECS / "color3d_jpeg_baseline.dcm", 3, RenderOptions(viewport=(128, 128)))
    assert _open(data, "JPEG").size == (128, 96)


# --- query parsing --------------------------------------------------------------------------------------


def test_parse_defaults() -> None:
    assert parse_render_query({}, None, thumbnail=False) == RenderOptions()
    assert parse_render_query({}, None, thumbnail=True) == RenderOptions(viewport=(128, 128))
    assert parse_render_query({"viewport": "64,32"}, None, thumbnail=True).viewport == (64, 32)


def test_parse_accept_param_beats_header() -> None:
    assert (
        parse_render_query({"accept": "image/png"}, "image/jpeg", thumbnail=False).media_type == "image/png"
    )
    assert parse_render_query({}, "image/png", thumbnail=False).media_type == "image/png"
    assert (
        parse_render_query({"accept": "image/jpeg"}, "image/gif", thumbnail=False).media_type == "image/jpeg"
    )


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("image/*", "image/jpeg"),
        ("*/*", "image/jpeg"),
        ("image/gif, image/png", "image/png"),
        ("image/jpeg;q=0.5, image/png", "image/png"),
        ("image/png;q=0, image/jpeg;q=0.1", "image/jpeg"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "image/jpeg"),
        ("IMAGE/PNG", "image/png"),
    ],
)
def test_parse_accept_negotiation(accept: str, expected: str) -> None:
    assert parse_render_query({}, accept, thumbnail=False).media_type == expected


@pytest.mark.parametrize("accept", ["image/gif", "application/dicom", "image/png;q=0", "image/png;q=x"])
def test_parse_unsupported_media_type(accept: str) -> None:
    with pytest.raises(RenderError):
        parse_render_query({"accept": accept}, None, thumbnail=False)
    with pytest.raises(RenderError, match="unsupported media type image/gif"):
        parse_render_query({}, "image/gif", thumbnail=True)


def test_parse_viewport_window_quality() -> None:
    options = parse_render_query(
        {"viewport": "512,256,0,0,100,100", "window": "40,400,LINEAR_EXACT", "quality": "75"},
        None,
        thumbnail=False,
    )
    assert options == RenderOptions(viewport=(512, 256), window=(40.0, 400.0, "linear_exact"), quality=75)
    assert parse_render_query({"window": "-600,1500"}, None, thumbnail=False).window == (
        -600.0,
        1500.0,
        "linear",
    )
    assert parse_render_query({"window": "1,2,sigmoid"}, None, thumbnail=False).window == (
        1.0,
        2.0,
        "sigmoid",
    )
    assert (
        parse_render_query({"window": "1,2,linear-exact"}, None, thumbnail=False).window[2] == "linear_exact"
    )


@pytest.mark.parametrize(
    "params",
    [
        {"viewport": "abc"},
        {"viewport": "10"},
        {"viewport": "0,10"},
        {"viewport": "-5,10"},
        {"viewport": "1,2,3"},
        {"viewport": "10.5,10"},
        {"window": "40"},
        {"window": "40,0,linear"},
        {"window": "a,b,linear"},
        {"window": "40,400,cubic"},
        {"quality": "high"},
        {"quality": "0"},
        {"quality": "101"},
    ],
)
def test_parse_malformed_values(params: dict[str, str]) -> None:
    with pytest.raises(RenderError):
        parse_render_query(params, None, thumbnail=False)
