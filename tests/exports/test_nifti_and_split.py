"""The pure parts of exports on real DICOM and plain data: NIfTI geometry against SimpleITK, gantry tilt,
irregular series, label maps on the image grid, the stratified split."""

import copy
import math
from collections import Counter

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from annotation.exports.datalist import datalist, stratified_split
from annotation.exports.nifti import LPS_TO_RAS, NotConvertible, labelmap, series_volume, write_nifti


def itk_affine_ras(image: sitk.Image) -> np.ndarray:
    """SimpleITK's voxel-to-world matrix (LPS) converted to RAS."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return LPS_TO_RAS @ affine


def assert_same_as_simpleitk(nifti_path, itk_image: sitk.Image) -> None:
    """The NIfTI holds SimpleITK's voxels at the same world positions: its grid maps onto SimpleITK's by a
    signed permutation of axes (a frame order may differ) and every voxel value matches."""
    image = nib.load(str(nifti_path))
    mapping = np.linalg.inv(itk_affine_ras(itk_image)) @ image.affine
    axes, offset = np.round(mapping[:3, :3]), np.round(mapping[:3, 3])
    assert np.allclose(mapping[:3, :3], axes, atol=1e-3) and np.allclose(mapping[:3, 3], offset, atol=1e-3), mapping
    assert sorted(np.abs(axes).sum(axis=0).tolist()) == [1, 1, 1]
    ours = np.asanyarray(image.dataobj)
    theirs = sitk.GetArrayFromImage(itk_image).transpose(2, 1, 0)
    index = np.indices(ours.shape).reshape(3, -1)
    target = (axes.astype(int) @ index + offset.astype(int)[:, None])
    assert np.allclose(ours.reshape(-1), theirs[target[0], target[1], target[2]], atol=1e-3)
    spacing = np.linalg.norm(image.affine[:3, :3], axis=0)
    assert sorted(np.round(spacing, 4)) == sorted(np.round(itk_image.GetSpacing(), 4))


def read_itk(path) -> sitk.Image:
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
        return reader.Execute()
    return sitk.ReadImage(str(path))


def datasets(path, pixels=True):
    files = sorted(p for p in path.iterdir()) if path.is_dir() else [path]
    return [pydicom.dcmread(f, stop_before_pixels=not pixels) for f in files]


@pytest.mark.parametrize("source", [
    "seg_sr/dcmqi_liver_ct3slice/ct",                       # axial CT, rescale to int16
    "multiframe_and_codecs_pydicom_data/eCT_Supplemental.dcm",  # enhanced CT: frames in reverse slice order
    "multiframe_and_codecs_pydicom_data/MR2_J2KR.dcm",       # oblique single slice, J2K, float rescale
    "transfer_syntaxes/dcm_qa_ts/1.dcm",                     # oblique single MR slice
])
def test_nifti_geometry_and_voxels_match_simpleitk(shared_data, tmp_path, source):
    path = shared_data / "dicom" / source
    volume = series_volume(datasets(path))
    write_nifti(tmp_path / "image.nii.gz", volume.data, volume)
    assert_same_as_simpleitk(tmp_path / "image.nii.gz", read_itk(path))
    header = nib.load(str(tmp_path / "image.nii.gz")).header
    assert header["sform_code"] == 1 and header["qform_code"] == 1


def test_sagittal_mr_series_of_192_slices_matches_simpleitk(shared_data, tmp_path):
    path = shared_data / "dicom" / "series" / "mr_brain_sag_mprage_siemens_skyra_192sl"
    volume = series_volume(datasets(path))
    assert volume.shape == (256, 256, 192) and volume.tilt_degrees < 0.01
    write_nifti(tmp_path / "image.nii.gz", volume.data, volume)
    assert_same_as_simpleitk(tmp_path / "image.nii.gz", read_itk(path))


def test_nifti_bytes_depend_only_on_data_and_geometry(shared_data, tmp_path):
    volume = series_volume(datasets(shared_data / "dicom" / "seg_sr" / "dcmqi_liver_ct3slice" / "ct"))
    write_nifti(tmp_path / "a.nii.gz", volume.data, volume)
    write_nifti(tmp_path / "b.nii.gz", volume.data, volume)
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()


def _tilted(slices, degrees: float):
    """The slices as a gantry-tilted acquisition: each slice shifted along y by z * tan(tilt)."""
    out = []
    shear = math.tan(math.radians(degrees))
    z0 = float(slices[0].ImagePositionPatient[2])
    for ds in slices:
        ds = copy.deepcopy(ds)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + (z - z0) * shear, z]
        ds.GantryDetectorTilt = degrees
        out.append(ds)
    return out


def test_gantry_tilt_keeps_every_slice_where_the_scanner_put_it(shared_data, tmp_path):
    slices = _tilted(datasets(shared_data / "dicom" / "series" / "ct_head_phantom_philips_ingenuity_28sl"), 15.0)
    volume = series_volume(slices)
    assert volume.tilt_degrees == pytest.approx(15.0, abs=0.01)
    assert any("gantry tilt" in note for note in volume.notes)
    write_nifti(tmp_path / "tilted.nii.gz", volume.data, volume)
    image = nib.load(str(tmp_path / "tilted.nii.gz"))
    ordered = sorted(slices, key=lambda ds: float(ds.ImagePositionPatient[2]))
    for k, ds in enumerate(ordered):  # the sform (sheared) puts voxel (0, 0, k) at slice k's position
        world = LPS_TO_RAS @ np.r_[[float(v) for v in ds.ImagePositionPatient], 1.0]
        assert np.allclose(image.affine @ [0, 0, k, 1], world, atol=1e-3)
    qform = image.get_qform()  # orthogonal: ITK-based tools fall back on it
    assert abs(np.dot(qform[:3, 1], qform[:3, 2])) < 1e-3 and np.linalg.norm(qform[:3, 2]) == pytest.approx(5.0)
    assert image.header["sform_code"] == 1 and image.header["qform_code"] == 1


def test_series_that_one_affine_cannot_describe_are_refused_with_the_reason(shared_data):
    ct = datasets(shared_data / "dicom" / "series" / "ct_head_phantom_philips_ingenuity_28sl", pixels=False)
    with pytest.raises(NotConvertible) as missing:
        series_volume(ct[:10] + ct[11:], pixels=False)
    assert missing.value.code == "non_uniform_spacing" and "missing" in missing.value.reason
    for name, code in [("OBXXXX1A_rle_2frame.dcm", "no_geometry"), ("color3d_jpeg_baseline.dcm", "colour"),
                       ("emri_small_jpeg_2k_lossless.dcm", "no_geometry")]:
        with pytest.raises(NotConvertible) as refused:
            series_volume(datasets(shared_data / "dicom" / "multiframe_and_codecs_pydicom_data" / name,
                                   pixels=False), pixels=False)
        assert refused.value.code == code


def test_label_maps_follow_the_frame_order_of_the_image(shared_data):
    ect = datasets(shared_data / "dicom" / "multiframe_and_codecs_pydicom_data" / "eCT_Supplemental.dcm")
    volume = series_volume(ect)
    assert volume.order == [1, 0]  # frame 2 lies lower along the slice normal
    mask = np.zeros((2, 512, 512), bool)
    mask[0, 10:20, 30:40] = True  # drawn on frame 1
    data, overlaps = labelmap({1: mask}, volume)
    assert overlaps == 0 and data.shape == volume.shape
    assert data[30:40, 10:20, 1].all() and not data[:, :, 0].any()  # frame 1 is the volume's slice 1
    assert np.array_equal(volume.data[:, :, 1], (ect[0].pixel_array[0].astype(np.int32) - 1024).T)


def test_split_is_stratified_seeded_and_stable():
    strata = {f"case-{i:03d}": ("A" if i % 4 else "B") for i in range(200)}
    splits = stratified_split(strata, validation=0.2, test=0.1, seed=7)
    counts = Counter((strata[c], s) for c, s in splits.items())
    assert counts == {("A", "training"): 105, ("A", "validation"): 30, ("A", "test"): 15,
                      ("B", "training"): 35, ("B", "validation"): 10, ("B", "test"): 5}
    assert stratified_split(strata, validation=0.2, test=0.1, seed=7) == splits
    assert stratified_split(strata, validation=0.2, test=0.1, seed=8) != splits
    grown = stratified_split(strata | {f"case-{i:03d}": "A" for i in range(200, 220)}, validation=0.2, test=0.1,
                             seed=7)
    assert sum(grown[c] != s for c, s in splits.items()) <= 20  # most cases keep their split as data grows
    listed = datalist([{"case": c, "image": f"{c}.nii.gz", "label": 0} for c in sorted(strata)], splits)
    assert (listed["numTraining"], listed["numValidation"], listed["numTest"]) == (140, 40, 20)
