"""Tests for imaging.dicom.pixels: index pixel data at ingest, serve frames with one read.

Real files are used by path from the shared data folder (never copied into the repo) and
from pydicom's own test data; every served frame must decode exactly like pydicom's own
decoding of that frame.
"""

from __future__ import annotations

import copy
import io
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import get_decoder, iter_pixels, pack_bits
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from imaging.dicom.pixels import PixelDataError, PixelIndex, index_pixel_data, read_frame

ROOT = Path(__file__).resolve().parents[2]
SHARED_DICOM = Path(os.environ.get("OKAPI_SHARED_DATA", ROOT.parent / "shared" / "data")) / "dicom"
TS_DIR = SHARED_DICOM / "transfer_syntaxes" / "dcm_qa_ts"
_KEYWORDS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}


def _shared_files() -> list[Path]:
    if not SHARED_DICOM.is_dir():
        return []
    return sorted(p for p in SHARED_DICOM.rglob("*") if p.is_file())


def _shared(relative: str) -> Path:
    path = SHARED_DICOM / relative
    if not path.is_file():
        pytest.skip(f"shared data not available: {path}")
    return path


# pydicom test files chosen for what they exercise (all decodable by pydicom).
PYDICOM_FILES = [
    "emri_small_big_endian.dcm",  # big endian 16-bit, 10 frames
    "MR_small_bigendian.dcm",  # big endian 16-bit, signed
    "SC_rgb_expb_32bit_2frame.dcm",  # big endian 32-bit RGB, 2 frames
    "rtdose_expb.dcm",  # big endian 32-bit, 15 frames
    "SC_rgb_small_odd_big_endian.dcm",  # big endian 8-bit as OW, odd length (swap displaces padding)
    "OBXXXX1A_expb_2frame.dcm",  # big endian 8-bit OW, 2 frames
    "liver.dcm",  # 1-bit SEG, 3 frames
    "liver_expb.dcm",  # 1-bit SEG, big endian OB
    "SC_ybr_full_422_uncompressed.dcm",  # native 4:2:2, two samples per pixel
    "MR_small_implicit.dcm",
    "emri_small_RLE.dcm",  # RLE, 10 frames
    "emri_small_jpeg_ls_lossless.dcm",  # JPEG-LS, 10 frames
    "rtdose_rle.dcm",  # RLE, 15 frames
    "RG1_J2KR.dcm",  # one frame in 66 fragments
    "JPEG-LL.dcm",  # one frame in 2 fragments
    "examples_ybr_color.dcm",  # JPEG baseline YBR, 30 frames
]


def _transfer_syntax(ds: Dataset) -> str:
    return str(ds.file_meta.TransferSyntaxUID)


def _index(path: Path | str) -> PixelIndex | None:
    with open(path, "rb") as fp:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
        return index_pixel_data(
            fp, dataset=ds, transfer_syntax_uid=_transfer_syntax(ds), file_size=os.path.getsize(path)
        )


def _frames(path: Path | str, index: PixelIndex) -> list[bytes]:
    with open(path, "rb") as fp:
        return [read_frame(fp, index, n) for n in range(1, index.number_of_frames + 1)]


def _decode_served(full: Dataset, index: PixelIndex, frame: bytes) -> np.ndarray:
    """Decode one served frame with pydicom, as a client of the served bytes would."""
    keyword = _KEYWORDS[index.tag]
    vr = full[keyword].VR
    # Deep copy without the (large) pixel data: setting values on a shallow copy would
    # change the elements of `full` too.
    without_pixels = Dataset(
        {tag: el for tag, el in full.items() if tag not in (*_KEYWORDS, 0x7FE00001, 0x7FE00002)}
    )
    without_pixels.file_meta = full.file_meta
    ds = copy.deepcopy(without_pixels)
    if index.encapsulated:
        ds[keyword] = DataElement(index.tag, vr, encapsulate([frame]), is_undefined_length=True)
    else:
        # Served native frames are always little endian.
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds[keyword] = DataElement(index.tag, vr, frame)
    if "NumberOfFrames" in ds:
        ds.NumberOfFrames = 1
    arr, _ = get_decoder(ds.file_meta.TransferSyntaxUID).as_array(ds, index=0, raw=True)
    return arr


def _assert_frames_decode_like_pydicom(path: Path | str) -> PixelIndex:
    index = _index(path)
    assert index is not None
    frames = _frames(path, index)
    reference = list(iter_pixels(path, raw=True))
    assert len(reference) == index.number_of_frames
    full = pydicom.dcmread(path)
    for n, (frame, expected) in enumerate(zip(frames, reference, strict=True), start=1):
        assert len(frame) == index.frame_length(n)
        got = _decode_served(full, index, frame)
        assert got.shape == expected.shape
        assert np.array_equal(got, expected), f"{path}: frame {n} differs"
    if index.encapsulated:
        # Byte level: same frames as pydicom's own fragment-to-frame mapping.
        eot = None
        if "ExtendedOffsetTable" in full:
            eot = (full.ExtendedOffsetTable, full.ExtendedOffsetTableLengths)
        stored = list(
            generate_frames(full.PixelData, number_of_frames=index.number_of_frames, extended_offsets=eot)
        )
        assert frames == stored
    return index


@pytest.mark.parametrize("path", _shared_files(), ids=lambda p: str(p.relative_to(SHARED_DICOM)))
def test_shared_files_frames_match_pydicom(path: Path) -> None:
    with open(path, "rb") as fp:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
        has_pixels = "PixelData" in pydicom.dcmread(path)
    if not has_pixels:
        assert _index(path) is None
        return
    index = _assert_frames_decode_like_pydicom(path)
    assert index.number_of_frames == int(ds.get("NumberOfFrames") or 1)
    assert PixelIndex.from_json(index.to_json()) == index


@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_pydicom_files_frames_match_pydicom(name: str) -> None:
    _assert_frames_decode_like_pydicom(get_testdata_file(name))


def test_transfer_syntaxes_serve_same_pixels() -> None:
    # dcm_qa_ts stores one slice in 9 syntaxes; what we serve must decode identically in all.
    reference = None
    for number in range(1, 10):
        path = _shared(f"transfer_syntaxes/dcm_qa_ts/{number}.dcm")
        index = _index(path)
        assert index is not None
        arr = _decode_served(pydicom.dcmread(path), index, _frames(path, index)[0]).astype(np.int32)
        if reference is None:
            reference = arr
        assert np.array_equal(arr, reference), f"{number}.dcm"


def test_index_fields_native_and_encapsulated() -> None:
    explicit, big, rle = (_index(_shared(f"transfer_syntaxes/dcm_qa_ts/{n}.dcm")) for n in (1, 3, 4))
    assert explicit.tag == 0x7FE00010 and explicit.vr == "OW" and not explicit.encapsulated
    assert explicit.frame_bits == 384 * 384 * 16 and explicit.swap_bytes == 0
    assert explicit.value_length == 384 * 384 * 2 and explicit.frame_length(1) == 384 * 384 * 2
    with open(TS_DIR / "1.dcm", "rb") as fp:
        fp.seek(explicit.value_offset - 12)
        assert fp.read(4) == b"\xe0\x7f\x10\x00"
    assert big.swap_bytes == 2
    implicit = _index(_shared("transfer_syntaxes/dcm_qa_ts/2.dcm"))
    assert implicit.vr == "OW"  # inferred: implicit VR, BitsAllocated 16
    assert rle.encapsulated and rle.number_of_frames == 1 and rle.frame_bits == 0
    with open(TS_DIR / "4.dcm", "rb") as fp:
        fp.seek(rle.value_offset)
        assert fp.read(4) == b"\xfe\xff\x00\xe0"  # the Basic Offset Table item
        fp.seek(rle.value_offset + rle.value_length - 8)
        assert fp.read(4) == b"\xfe\xff\xdd\xe0"  # value ends with the sequence delimiter


def test_multiframe_jpeg_index() -> None:
    index = _index(_shared("multiframe_and_codecs_pydicom_data/color3d_jpeg_baseline.dcm"))
    assert index.encapsulated and index.number_of_frames == 120 and len(index.fragments) == 120
    with pytest.raises(IndexError):
        index.frame_length(121)
    with open(SHARED_DICOM / "multiframe_and_codecs_pydicom_data/color3d_jpeg_baseline.dcm", "rb") as fp:
        assert read_frame(fp, index, 120)[:2] == b"\xff\xd8"
        for n in (0, 121, -1):
            with pytest.raises(IndexError):
                read_frame(fp, index, n)


def test_read_frame_from_file_and_memory_agree() -> None:
    path = _shared("multiframe_and_codecs_pydicom_data/OBXXXX1A_rle_2frame.dcm")
    index = _index(path)
    with open(path, "rb") as fp:
        fp.seek(123)
        from_file = [read_frame(fp, index, n) for n in (1, 2)]
        assert fp.tell() == 123  # os.pread leaves the shared file position alone
        fp.seek(0)
        memory = io.BytesIO(fp.read())
    assert [read_frame(memory, index, n) for n in (1, 2)] == from_file


def test_json_round_trip() -> None:
    for index in (
        _index(_shared("transfer_syntaxes/dcm_qa_ts/3.dcm")),
        _index(_shared("multiframe_and_codecs_pydicom_data/color3d_jpeg_baseline.dcm")),
        _index(get_testdata_file("RG1_J2KR.dcm")),
    ):
        text = index.to_json()
        assert " " not in text
        assert PixelIndex.from_json(text) == index
    with pytest.raises(ValueError):
        PixelIndex.from_json('{"tag": 1}')


def _one_bit_file(path: Path, bits: np.ndarray, *, big_endian: bool = False) -> None:
    """Write a 1-bit multi-frame file: frames of 3x5 = 15 bits never align on bytes."""
    frames, rows, columns = bits.shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRBigEndian if big_endian else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    packed = pack_bits(bits)
    if big_endian:
        # OW in big endian: the little endian bytes, swapped per 16-bit word.
        packed = packed.ljust(len(packed) + len(packed) % 2, b"\0")
        packed = np.frombuffer(packed, "<u2").byteswap().tobytes()
    ds.PixelData = packed
    ds["PixelData"].VR = "OW" if big_endian else "OB"
    ds.save_as(path, enforce_file_format=True, little_endian=not big_endian, implicit_vr=False)


@pytest.mark.parametrize("big_endian", [False, True])
def test_one_bit_frames_not_byte_aligned(tmp_path: Path, big_endian: bool) -> None:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2, size=(5, 3, 5), dtype=np.uint8)
    path = tmp_path / "onebit.dcm"
    _one_bit_file(path, bits, big_endian=big_endian)
    index = _index(path)
    assert index.frame_bits == 15 and index.swap_bytes == (2 if big_endian else 0)
    for n, frame in enumerate(_frames(path, index), start=1):
        assert len(frame) == 2 == index.frame_length(n)
        unpacked = np.unpackbits(np.frombuffer(frame, np.uint8), bitorder="little")
        assert np.array_equal(unpacked[:15], bits[n - 1].ravel())
        assert not unpacked[15:].any()  # padding bits are zero, not the next frame's pixels
    if not big_endian:
        # pydicom's per-frame iterator cannot split 15-bit frames, its whole-volume array
        # can; it does not swap 1-bit OW big endian (dcmtk does, and so do we): LE only.
        full = pydicom.dcmread(path)
        volume = full.pixel_array
        for n, frame in enumerate(_frames(path, index), start=1):
            assert np.array_equal(_decode_served(full, index, frame), volume[n - 1])


def test_no_pixel_data_returns_none() -> None:
    assert _index(_shared("seg_sr/highdicom_small/sr_document.dcm")) is None
    ds = Dataset()
    assert (
        index_pixel_data(io.BytesIO(b""), dataset=ds, transfer_syntax_uid=ExplicitVRLittleEndian, file_size=0)
        is None
    )
    # Trailing padding (FFFC,FFFC) after the dataset is not pixel data.
    padding = struct.pack("<HH2sHL", 0xFFFC, 0xFFFC, b"OB", 0, 4) + b"\0" * 4
    fp = io.BytesIO(padding)
    assert (
        index_pixel_data(fp, dataset=ds, transfer_syntax_uid=ExplicitVRLittleEndian, file_size=len(padding))
        is None
    )


def _truncated_copy(tmp_path: Path, source: Path | str, size: int) -> Path:
    target = tmp_path / "cut.dcm"
    shutil.copyfile(source, target)
    with open(target, "r+b") as fp:
        fp.truncate(size)
    return target


def test_truncated_native(tmp_path: Path) -> None:
    source = _shared("transfer_syntaxes/dcm_qa_ts/1.dcm")
    index = _index(source)
    cut = _truncated_copy(tmp_path, source, index.value_offset + 1000)
    with pytest.raises(
        PixelDataError, match="truncated: pixel data declares 294912 bytes but the file ends after 1000"
    ):
        _index(cut)


@pytest.mark.parametrize("trim, reason", [(100, "truncated: fragment"), (8, "missing sequence delimiter")])
def test_truncated_encapsulated(tmp_path: Path, trim: int, reason: str) -> None:
    source = _shared("multiframe_and_codecs_pydicom_data/color3d_jpeg_baseline.dcm")
    cut = _truncated_copy(tmp_path, source, os.path.getsize(source) - trim)
    with pytest.raises(PixelDataError, match=reason):
        _index(cut)


def test_file_truncated_after_indexing(tmp_path: Path) -> None:
    source = _shared("multiframe_and_codecs_pydicom_data/color3d_jpeg_baseline.dcm")
    index = _index(source)
    cut = _truncated_copy(tmp_path, source, index.fragments[60][0][0] + 10)
    with open(cut, "rb") as fp:
        assert read_frame(fp, index, 1) == _frames(source, index)[0]
        with pytest.raises(PixelDataError, match="truncated"):
            read_frame(fp, index, 61)


def _rewrite(tmp_path: Path, source: Path | str, **changes: object) -> Path:
    ds = pydicom.dcmread(source)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    target = tmp_path / "changed.dcm"
    ds.save_as(target)
    return target


def test_native_value_too_short(tmp_path: Path) -> None:
    source = _shared("transfer_syntaxes/dcm_qa_ts/1.dcm")
    with pytest.raises(PixelDataError, match="need 295680"):
        _index(_rewrite(tmp_path, source, Rows=385))
    with pytest.raises(PixelDataError, match="2 frames need"):
        _index(_rewrite(tmp_path, source, NumberOfFrames=2))


def test_zero_rows(tmp_path: Path) -> None:
    with pytest.raises(PixelDataError, match="Rows=0"):
        _index(_rewrite(tmp_path, _shared("transfer_syntaxes/dcm_qa_ts/9.dcm"), Rows=0))


def test_native_undefined_length(tmp_path: Path) -> None:
    source = _shared("transfer_syntaxes/dcm_qa_ts/1.dcm")
    index = _index(source)
    target = tmp_path / "undefined.dcm"
    shutil.copyfile(source, target)
    with open(target, "r+b") as fp:
        fp.seek(index.value_offset - 4)
        fp.write(b"\xff\xff\xff\xff")
    with pytest.raises(PixelDataError, match="undefined length"):
        _index(target)


def test_deflated_rejected() -> None:
    with pytest.raises(PixelDataError, match="unsupported transfer syntax: Deflated"):
        index_pixel_data(
            io.BytesIO(b""),
            dataset=Dataset(),
            transfer_syntax_uid=DeflatedExplicitVRLittleEndian,
            file_size=0,
        )


def _reencapsulated(tmp_path: Path, source: Path | str, pixel_data: bytes, **elements: bytes) -> Path:
    ds = pydicom.dcmread(source)
    ds.PixelData = pixel_data
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    target = tmp_path / "reencapsulated.dcm"
    ds.save_as(target)
    return target


def _stored_frames(path: Path | str) -> list[bytes]:
    ds = pydicom.dcmread(path)
    return list(generate_frames(ds.PixelData, number_of_frames=ds.NumberOfFrames))


def test_fragments_mapped_by_basic_offset_table(tmp_path: Path) -> None:
    source = get_testdata_file("emri_small_RLE.dcm")  # RLE: nothing marks where a frame starts
    frames = _stored_frames(source)
    path = _reencapsulated(tmp_path, source, encapsulate(frames, fragments_per_frame=3, has_bot=True))
    index = _index(path)
    assert [len(f) for f in index.fragments] == [3] * 10
    assert _frames(path, index) == frames
    _assert_frames_decode_like_pydicom(path)
    without_bot = _reencapsulated(tmp_path, source, encapsulate(frames, fragments_per_frame=3, has_bot=False))
    with pytest.raises(PixelDataError, match="cannot map 30 fragments to 10 frames"):
        _index(without_bot)


def test_fragments_mapped_by_extended_offset_table(tmp_path: Path) -> None:
    source = get_testdata_file("emri_small_RLE.dcm")
    frames = _stored_frames(source)
    with_bot = encapsulate(frames, fragments_per_frame=2, has_bot=True)
    (bot_length,) = struct.unpack("<L", with_bot[4:8])
    offsets = with_bot[8 : 8 + bot_length]  # 32-bit BOT offsets, widened to the 64-bit EOT
    eot = struct.pack("<10Q", *struct.unpack("<10L", offsets))
    lengths = struct.pack("<10Q", *(len(f) for f in frames))
    pixel_data = encapsulate(frames, fragments_per_frame=2, has_bot=False)
    path = _reencapsulated(
        tmp_path, source, pixel_data, ExtendedOffsetTable=eot, ExtendedOffsetTableLengths=lengths
    )
    index = _index(path)
    assert [len(f) for f in index.fragments] == [2] * 10
    assert _frames(path, index) == frames


def test_bad_basic_offset_table_falls_back_to_one_fragment_per_frame(tmp_path: Path) -> None:
    source = get_testdata_file("emri_small_RLE.dcm")
    frames = _stored_frames(source)
    pixel_data = bytearray(encapsulate(frames, has_bot=True))
    pixel_data[12:16] = b"\x01\x00\x00\x00"  # second BOT entry no longer points at a fragment
    path = _reencapsulated(tmp_path, source, bytes(pixel_data))
    assert _frames(path, _index(path)) == frames


@pytest.mark.parametrize(
    "source",
    ["examples_ybr_color.dcm", "emri_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_2k_lossless.dcm"],
)
def test_fragments_mapped_by_jpeg_markers(tmp_path: Path, source: str) -> None:
    source_path = get_testdata_file(source)
    frames = _stored_frames(source_path)
    path = _reencapsulated(tmp_path, source_path, encapsulate(frames, fragments_per_frame=2, has_bot=False))
    index = _index(path)
    assert [len(f) for f in index.fragments] == [2] * len(frames)
    assert _frames(path, index) == frames


def test_implicit_vr_element_in_explicit_syntax() -> None:
    # pydicom's SC_rgb_jpeg.dcm encodes its pixel data element in implicit VR despite the
    # JPEG syntax; pydicom itself then misreads the offset table, we read the frame right.
    path = get_testdata_file("SC_rgb_jpeg.dcm")
    index = _index(path)
    assert index.encapsulated and index.vr == "OB"
    frame = _frames(path, index)[0]
    assert frame[:2] == b"\xff\xd8" and frame.rstrip(b"\0").endswith(b"\xff\xd9")


def test_implicit_little_endian_vr_inferred(tmp_path: Path) -> None:
    source = get_testdata_file("OBXXXX1A.dcm")  # 8-bit palette colour
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    target = tmp_path / "implicit.dcm"
    ds.save_as(target, implicit_vr=True, little_endian=True)
    index = _index(target)
    assert index.vr == "OB" and index.frame_bits == 600 * 800 * 8
    _assert_frames_decode_like_pydicom(target)
