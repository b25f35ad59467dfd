"""DICOM reading, PS3.15 basic-profile de-identification and previews, on pydicom's own files."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from healtrace.errors import InputError
from healtrace.vision.dicom import (
    BASIC_PROFILE_ACTIONS,
    DicomStudy,
    deidentify,
    frames_png,
    preview_png,
    read_dicom,
)


def _bundled(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    return Path(str(path)).read_bytes()


def _parse(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _walk(ds: Dataset) -> Iterator[pydicom.DataElement]:
    for elem in ds:
        yield elem
        if elem.VR == "SQ" and elem.value:
            for item in elem.value:
                yield from _walk(item)


def _image(
    rows: int = 8, cols: int = 8, *, frames: int | None = None, pixels: bool = True
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "MRN-998877"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if frames is not None:
        ds.NumberOfFrames = frames
    if pixels:
        ds.PixelData = bytes(range(64)) * 1  # deliberately short for huge headers
    return ds


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def _png_array(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


# --- the action table ------------------------------------------------------------------------


def test_every_profile_keyword_is_a_dicom_attribute() -> None:
    unknown = [k for k in BASIC_PROFILE_ACTIONS if tag_for_keyword(k) is None]
    assert unknown == []
    assert set(BASIC_PROFILE_ACTIONS.values()) <= {"X", "Z", "D", "U"}


# --- metadata --------------------------------------------------------------------------------


def test_ct_metadata() -> None:
    study = read_dicom(_bundled("CT_small.dcm"))
    meta = study.metadata
    assert study.has_pixels and study.frames == 1
    assert meta["modality"] == "CT"
    assert meta["sop_class"] == "CT Image Storage"
    assert meta["manufacturer"] == "GE MEDICAL SYSTEMS"
    assert (meta["rows"], meta["columns"]) == (128, 128)
    assert meta["photometric_interpretation"] == "MONOCHROME2"
    assert meta["bits_allocated"] == 16
    assert meta["pixel_spacing_mm"] == pytest.approx([0.661468, 0.661468])
    assert meta["slice_thickness_mm"] == 5.0
    assert meta["transfer_syntax"] == "Explicit VR Little Endian"
    assert meta["study_year"] == 2004
    # Quasi-identifiers are not surfaced: no full dates, no descriptions by default.
    assert meta["study_description"] is None
    flat = repr(study.to_dict())
    for secret in ("CompressedSamples", "1CT1", "JFK IMAGING", "20040119", "19970430"):
        assert secret not in flat


def test_mr_metadata_has_window() -> None:
    meta = read_dicom(_bundled("MR_small.dcm")).metadata
    assert meta["modality"] == "MR"
    assert (meta["rows"], meta["columns"]) == (64, 64)
    assert meta["window_center"] is not None and meta["window_width"] is not None


def test_descriptions_kept_only_on_request() -> None:
    data = _bundled("examples_overlay.dcm")
    original = _parse(data)
    assert original.get("StudyDescription")
    default = read_dicom(data)
    assert "StudyDescription" not in _parse(default.to_bytes())
    kept = read_dicom(data, keep_descriptions=True)
    assert kept.metadata["study_description"] == str(original.StudyDescription)
    assert _parse(kept.to_bytes()).StudyDescription == original.StudyDescription
    assert kept.report.descriptions_retained


# --- de-identification, checked tag by tag on the re-read file ---------------------------------


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small.dcm", "examples_overlay.dcm", "test-SR.dcm"]
)
def test_deidentified_file_tag_by_tag(name: str) -> None:
    data = _bundled(name)
    original = _parse(data)
    stored = read_dicom(data).to_bytes()
    clean = _parse(stored)

    clean_elems = list(_walk(clean))
    clean_by_kw: dict[str, list[pydicom.DataElement]] = {}
    for elem in clean_elems:
        clean_by_kw.setdefault(elem.keyword, []).append(elem)

    # Text that legitimately stays in an attribute outside the profile (MR_small's
    # Institution Name "TOSHIBA" is part of its Manufacturer, "TOSHIBA_MEC").
    retained = {str(e.value).strip() for e in clean_elems if e.keyword not in BASIC_PROFILE_ACTIONS}
    original_uids: set[str] = set()
    checked = 0
    for elem in _walk(original):
        action = BASIC_PROFILE_ACTIONS.get(elem.keyword)
        if action is None:
            continue
        checked += 1
        found = clean_by_kw.get(elem.keyword, [])
        if action == "X":
            assert found == [], elem.keyword
        elif action == "Z":
            assert all(not e.value for e in found), elem.keyword
        elif action == "D":
            assert all(e.value != elem.value or not elem.value for e in found), elem.keyword
        elif action == "U" and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            original_uids.update(str(v) for v in values)
        # No identifying text of the original survives anywhere in the stored bytes.
        if action in "XZD" and elem.VR in {"PN", "LO", "SH", "LT", "ST", "DA"}:
            text = str(elem.value).strip()
            if len(text) >= 4 and not any(text in kept for kept in retained):
                assert text.encode() not in stored, elem.keyword
    assert checked > 5

    clean_uids = {
        str(v)
        for e in clean_elems
        if BASIC_PROFILE_ACTIONS.get(e.keyword) == "U" and e.value
        for v in (e.value if e.VM > 1 else [e.value])
    }
    assert original_uids and not (original_uids & clean_uids)
    assert original.SOPClassUID == clean.SOPClassUID  # not an identifier; needed to read it
    assert clean.file_meta.MediaStorageSOPInstanceUID == clean.SOPInstanceUID
    assert "SourceApplicationEntityTitle" not in clean.file_meta
    assert clean.preamble == b"\0" * 128

    assert not [e for e in clean_elems if e.tag.is_private]
    assert not [e for e in clean_elems if 0x5000 <= e.tag.group <= 0x60FF]
    assert clean.PatientIdentityRemoved == "YES"
    assert "Basic Application Level Confidentiality Profile" in clean.DeidentificationMethod
    code = clean.DeidentificationMethodCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("113100", "DCM")


#: Patient-identifying attributes named here independently of the implementation's table
#: (PS3.15 Table E.1-1 rows a reader would check first): each must be absent or empty in
#: what is stored, whichever of pydicom's files carries it.
IDENTIFYING = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "PatientAddress",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientMotherBirthName",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
    "AccessionNumber",
    "StudyID",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "RequestingPhysician",
    "StationName",
    "DeviceSerialNumber",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "StudyTime",
    "SeriesTime",
    "AcquisitionTime",
    "ContentTime",
    "InstanceCreationDate",
    "AdditionalPatientHistory",
    "PatientComments",
    "ImageComments",
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
)
BUNDLED = (
    "CT_small.dcm",
    "MR_small.dcm",
    "rtdose.dcm",
    "examples_overlay.dcm",
    "examples_ybr_color.dcm",
    "test-SR.dcm",
    "SC_rgb_small_odd.dcm",
)


@pytest.mark.parametrize("name", BUNDLED)
def test_identifying_attributes_gone_from_stored_file(name: str) -> None:
    data = _bundled(name)
    original = _parse(data)
    clean = _parse(read_dicom(data).to_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rtdose.dcm carries an over-long (invalid) UID
        carried = [
            kw for kw in IDENTIFYING if any(e.keyword == kw and e.value for e in _walk(original))
        ]
    assert carried, f"{name} should carry some identifying attributes"
    for keyword in IDENTIFYING:
        left = [e for e in _walk(clean) if e.keyword == keyword and e.value not in (None, "", [])]
        assert left == [], (name, keyword, [e.value for e in left])
    # Whatever the table lists, no person name and no date or time survives anywhere, except
    # the profile's own dummies.
    for elem in _walk(clean):
        if elem.VR in {"PN", "DA", "DT", "TM"} and elem.value not in (None, ""):
            assert str(elem.value) in {"ANONYMOUS", "19000101", "000000", "19000101000000"}, (
                name,
                elem.keyword,
            )


def test_header_only_image_has_no_pixels() -> None:
    ds = _parse(_bundled("CT_small.dcm"))
    del ds.PixelData
    study = read_dicom(_to_bytes(ds))
    assert not study.has_pixels and study.frames == 0
    assert study.metadata["modality"] == "CT"
    assert not _parse(study.to_bytes()).PatientName
    with pytest.raises(InputError) as caught:
        preview_png(study)
    assert caught.value.code == "dicom_no_pixels"
    assert "no image data" in caught.value.message("en")
    assert "像素数据" in caught.value.message("zh-CN")


def test_report_names_keywords_never_values() -> None:
    study = read_dicom(_bundled("CT_small.dcm"))
    report = study.report.to_dict()
    assert "PatientName" in report["emptied"]
    assert "InstitutionName" in report["removed"]
    assert "StudyInstanceUID" in report["uids_replaced"]
    assert report["private_tags_removed"] > 0
    assert "CompressedSamples" not in repr(report)
    overlay = read_dicom(_bundled("examples_overlay.dcm")).report
    assert overlay.groups_removed == {"overlays (6000)"}


def test_deidentify_recurses_and_maps_uids_consistently() -> None:
    ds = _image()
    study_uid, series_uid = ds.StudyInstanceUID, ds.SeriesInstanceUID
    ds.add_new(0x00090010, "LO", "ACME_PRIVATE")
    ds.add_new(0x00091001, "LO", "patient's home phone")
    ref = Dataset()
    ref.SeriesInstanceUID = series_uid
    ref.PatientName = "Doe^Jane"
    ref.InstitutionName = "St Elsewhere"
    ref.add_new(0x00111001, "LO", "private in a sequence")
    nested = Dataset()
    nested.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ref.ReferencedInstanceSequence = Sequence([nested])
    ds.ReferencedSeriesSequence = Sequence([ref])
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 4)

    clean, report = deidentify(ds)

    assert ds.PatientName == "Doe^Jane" and ds.StudyInstanceUID == study_uid  # input untouched
    item = clean.ReferencedSeriesSequence[0]
    assert item.SeriesInstanceUID == clean.SeriesInstanceUID != series_uid
    assert item.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == clean.SOPInstanceUID
    assert not item.PatientName and "InstitutionName" not in item
    assert not [e for e in _walk(clean) if e.tag.is_private]
    assert 0x60003000 not in clean
    assert report.private_tags_removed == 3
    assert not clean.PatientID


def test_uid_salt_keeps_a_study_together_across_files() -> None:
    first = _image()
    second = _image()
    second.StudyInstanceUID = first.StudyInstanceUID
    salt = b"per-user secret"
    a = read_dicom(_to_bytes(first), salt=salt).clean
    b = read_dicom(_to_bytes(second), salt=salt).clean
    assert a.StudyInstanceUID == b.StudyInstanceUID != first.StudyInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    # Without a salt every call draws a fresh one: nothing links the two uploads.
    c = read_dicom(_to_bytes(first)).clean
    d = read_dicom(_to_bytes(first)).clean
    assert c.StudyInstanceUID != d.StudyInstanceUID


def test_burned_in_annotation_is_flagged() -> None:
    ds = _image()
    ds.BurnedInAnnotation = "YES"
    study = read_dicom(_to_bytes(ds))
    assert study.report.burned_in_annotation == "YES"
    assert study.report.pixels_may_identify
    assert any("pixels" in note for note in study.report.notes)
    plain = _image()
    plain.BurnedInAnnotation = "NO"
    plain.Modality = "CT"
    assert not read_dicom(_to_bytes(plain)).report.pixels_may_identify


# --- previews --------------------------------------------------------------------------------


def test_ct_preview_is_a_png_of_the_right_size() -> None:
    study = read_dicom(_bundled("CT_small.dcm"))
    png = preview_png(study)
    assert _png_size(png) == (128, 128)
    grey = _png_array(png)
    assert grey.ndim == 2 and grey.min() == 0 and grey.max() == 255
    assert _png_size(preview_png(study, max_side=64)) == (64, 64)


def test_preview_keeps_aspect_when_shrinking() -> None:
    study = read_dicom(_bundled("examples_overlay.dcm"))  # 484 wide, 300 high
    width, height = _png_size(preview_png(study, max_side=100))
    assert width == 100 and 60 <= height <= 63


def test_monochrome1_is_inverted() -> None:
    data = _bundled("MR_small.dcm")
    ds = _parse(data)
    ds.PhotometricInterpretation = "MONOCHROME1"
    normal = _png_array(preview_png(read_dicom(data)))
    inverted = _png_array(preview_png(read_dicom(_to_bytes(ds))))
    assert np.array_equal(normal.astype(int) + inverted.astype(int), np.full(normal.shape, 255))


def test_colour_preview_is_rgb() -> None:
    png = preview_png(read_dicom(_bundled("SC_rgb_small_odd.dcm")))
    assert _png_array(png).shape == (3, 3, 3)


def test_multiframe_counts_frames_and_previews_the_middle() -> None:
    study = read_dicom(_bundled("rtdose.dcm"))
    assert study.frames == 15 and study.metadata["frames"] == 15
    middle = preview_png(study)
    assert middle == preview_png(study, frame=7)
    assert middle != preview_png(study, frame=0)
    sheet = frames_png(study, count=4)
    assert len(sheet) == 4 and all(_png_size(p) == (10, 10) for p in sheet)
    assert len(frames_png(study, count=100)) == 15
    with pytest.raises(InputError):
        preview_png(study, frame=15)


def test_multiframe_compressed_colour() -> None:
    study = read_dicom(_bundled("examples_ybr_color.dcm"))  # 30 frames, JPEG baseline, YBR
    assert study.frames == 30
    assert _png_array(preview_png(study)).shape == (240, 320, 3)


# --- rejections ------------------------------------------------------------------------------


def test_no_pixel_data() -> None:
    study = read_dicom(_bundled("test-SR.dcm"))
    assert not study.has_pixels and study.frames == 0
    assert study.metadata["modality"] == "SR"
    with pytest.raises(InputError) as caught:
        preview_png(study)
    assert caught.value.code == "dicom_no_pixels"
    built = _image(pixels=False)
    for keyword in ("Rows", "Columns", "BitsAllocated"):
        delattr(built, keyword)
    bare = read_dicom(_to_bytes(built))
    assert not bare.has_pixels
    with pytest.raises(InputError) as caught:
        frames_png(bare)
    assert caught.value.code == "dicom_no_pixels"


@pytest.mark.parametrize("cut", [140, 200, 800, 1500, 5000, 20000, -10])
def test_truncated_file_is_corrupt(cut: int) -> None:
    data = _bundled("CT_small.dcm")
    with pytest.raises(InputError) as caught:
        read_dicom(data[:cut])
    assert caught.value.code == "image_corrupt"


@pytest.mark.parametrize(
    ("name", "fraction"),
    [("MR_truncated.dcm", 1.0), ("image_dfl.dcm", 0.6), ("MR_small_RLE.dcm", 0.9)],
)
def test_other_truncated_files_are_corrupt(name: str, fraction: float) -> None:
    data = _bundled(name)  # MR_truncated is pydicom's own cut file; dfl is deflated
    with pytest.raises(InputError) as caught:
        read_dicom(data[: int(len(data) * fraction)])
    assert caught.value.code == "image_corrupt"


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(7).bytes(4096),
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 20,
        b"\0" * 128 + b"DICN" + b"\0" * 64,
    ],
    ids=["random", "pdf", "no-dicm"],
)
def test_not_dicom_is_unsupported(data: bytes) -> None:
    with pytest.raises(InputError) as caught:
        read_dicom(data)
    assert caught.value.code == "image_unsupported_format"


def test_empty_and_oversized() -> None:
    with pytest.raises(InputError) as caught:
        read_dicom(b"")
    assert caught.value.code == "image_empty"
    data = _bundled("CT_small.dcm")
    with pytest.raises(InputError) as caught:
        read_dicom(data, max_bytes=1000)
    assert caught.value.code == "image_too_large"
    assert caught.value.params == {"size": len(data), "limit": 1000}


@pytest.mark.parametrize(("rows", "cols", "frames"), [(65535, 65535, None), (1000, 1000, 100)])
def test_too_many_pixels_is_refused_before_decoding(
    rows: int, cols: int, frames: int | None
) -> None:
    # Rows and Columns are US, so 65535 is the largest a single frame can claim; the
    # pixel data is 64 bytes, so decoding it would fail differently.
    data = _to_bytes(_image(rows, cols, frames=frames))
    with pytest.raises(InputError) as caught:
        read_dicom(data)
    assert caught.value.code == "image_too_many_pixels"
    assert caught.value.params == {"width": cols, "height": rows, "limit": 80}
    assert "80 megapixels" in caught.value.message("en")


@pytest.mark.parametrize(
    ("name", "syntax"),
    [("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS"), ("JPEG-lossy.dcm", "JPEG Extended")],
)
def test_undecodable_compression_is_unsupported(name: str, syntax: str) -> None:
    study = read_dicom(_bundled(name))  # the header is still read and cleaned
    assert study.has_pixels
    assert _parse(study.to_bytes()).PatientIdentityRemoved == "YES"
    with pytest.raises(InputError) as caught:
        preview_png(study)
    assert caught.value.code == "image_unsupported_format"
    assert syntax in caught.value.detail
    assert "compressed pixel data that cannot be decoded" in caught.value.message("en")


def test_to_dict_is_plain() -> None:
    study = read_dicom(_bundled("MR_small.dcm"))
    assert isinstance(study, DicomStudy)
    out = study.to_dict()
    assert out["has_pixels"] and out["pixels_decodable"]
    assert out["deidentification"]["profile"] == "Basic Application Level Confidentiality Profile"
