"""DICOM uploads: read safely, strip identity, and render an 8-bit preview.

A DICOM file carries the patient's identity in its header (name, ID, birth date, the
institution, the referring physician, dates that pin down a visit, UIDs that link back to the
hospital's archive) and sometimes in vendor private tags and overlays. HealTrace stores only
the de-identified copy (:meth:`DicomStudy.to_bytes`) and surfaces only non-identifying
acquisition metadata.

De-identification follows the *Basic Application Level Confidentiality Profile* of DICOM
PS3.15 Annex E, Table E.1-1 ("Application Level Confidentiality Profile Attributes"). Each
attribute listed below gets the profile's action:

* ``X`` remove, ``Z`` replace with a zero-length value, ``D`` replace with a dummy value of the
  same VR, ``U`` replace a UID with a new one, mapped consistently.
* Where the table allows a choice (``Z/D``, ``X/Z``, ``X/D``, ``X/Z/D``) we take the option that
  keeps the least information: ``X`` when allowed, else ``Z``; a dummy only where the table
  asks for ``D`` alone.
* Dates and times follow the basic profile (study date/time zero-length, the others removed)
  because they are quasi-identifiers: a scan date plus a modality and a hospital can single a
  person out. The only date information surfaced is the study *year* in the metadata (what
  HIPAA Safe Harbor also allows); the stored file keeps none: any DA, DT or TM element the
  table has no row for (Date of Secondary Capture, calibration dates, …) is emptied too, and
  so is any person name (PN), so no name or date survives whatever the table's edition.
* Study and series descriptions are ``X`` in the basic profile (free text that often holds a
  name or a referral note). They are kept only when the caller asks for it
  (``keep_descriptions=True``), which is the caller's decision to vouch for their content.
* All private tags are removed (the profile's default; the Retain Safe Private Option needs a
  per-vendor whitelist we do not have), as are curve (50xx) and overlay (60xx) groups, which
  can carry drawn text.
* Header cleaning cannot remove text burned into the pixels. When Burned In Annotation is
  ``YES`` (or unknown for modalities that commonly burn text in, such as ultrasound and
  secondary capture) the report says so; callers must not treat such pixels as anonymous.
* Structured reports lose their Content Sequence (``X`` in the table): the findings text is
  free text that names people, so an SR keeps only its header after cleaning.

pydicom warns about odd-but-readable values; those warnings are silenced around parsing and
cleaning with ``warnings.catch_warnings``, which swaps the process-wide filter list and so is
not thread-safe: call this module from one worker thread at a time or accept that a warning
raised elsewhere meanwhile may be hidden.
"""

from __future__ import annotations

import copy
import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pydicom
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut
from pydicom.pixels.utils import pixel_array
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID, generate_uid

from healtrace.errors import InputError

__all__ = [
    "BASIC_PROFILE_ACTIONS",
    "DeidReport",
    "DicomStudy",
    "deidentify",
    "frames_png",
    "preview_png",
    "read_dicom",
]

MAX_BYTES: Final = 100 * 1024 * 1024
MAX_PIXELS: Final = 80_000_000

PROFILE_NAME: Final = "Basic Application Level Confidentiality Profile"
#: DCM code for the profile, put into De-identification Method Code Sequence (0012,0064).
PROFILE_CODE: Final = ("113100", "DCM", "Basic Application Confidentiality Profile")
#: De-identification Method (0012,0063) is LO, at most 64 characters; the report has details.
DEID_METHOD: Final = "DICOM PS3.15 Basic Application Level Confidentiality Profile"

# PS3.15 Annex E, Table E.1-1, basic profile column, resolved to one action per attribute
# (see the module docstring for how choices such as X/Z/D were resolved). Keywords are
# pydicom's data-dictionary names; tests check that every one of them resolves to a tag.
BASIC_PROFILE_ACTIONS: Final[dict[str, str]] = {
    # Patient identity and demographics.
    "PatientName": "Z",
    "PatientID": "Z",
    "PatientBirthDate": "Z",
    "PatientSex": "Z",
    "PatientBirthTime": "X",
    "PatientAge": "X",
    "PatientSize": "X",
    "PatientWeight": "X",
    "PatientAddress": "X",
    "PatientTelephoneNumbers": "X",
    "PatientMotherBirthName": "X",
    "PatientBirthName": "X",
    "OtherPatientIDs": "X",
    "OtherPatientIDsSequence": "X",
    "OtherPatientNames": "X",
    "IssuerOfPatientID": "X",
    "MedicalRecordLocator": "X",
    "EthnicGroup": "X",
    "Occupation": "X",
    "AdditionalPatientHistory": "X",
    "PatientComments": "X",
    "PatientState": "X",
    "PatientReligiousPreference": "X",
    "PatientInsurancePlanCodeSequence": "X",
    "PatientSexNeutered": "X",
    "MilitaryRank": "X",
    "BranchOfService": "X",
    "CountryOfResidence": "X",
    "RegionOfResidence": "X",
    "MedicalAlerts": "X",
    "Allergies": "X",
    "SmokingStatus": "X",
    "PregnancyStatus": "X",
    "LastMenstrualDate": "X",
    "ResponsiblePerson": "X",
    "ResponsibleOrganization": "X",
    "ReferencedPatientSequence": "X",
    # Visit, request and procedure step.
    "AccessionNumber": "Z",
    "StudyID": "Z",
    "StudyDescription": "X",
    "SeriesDescription": "X",
    "ProtocolName": "X",
    "AdmissionID": "X",
    "AdmittingDiagnosesDescription": "X",
    "AdmittingDiagnosesCodeSequence": "X",
    "CurrentPatientLocation": "X",
    "PatientInstitutionResidence": "X",
    "VisitComments": "X",
    "StudyComments": "X",
    "ReasonForStudy": "X",
    "RequestingPhysician": "X",
    "RequestingService": "X",
    "RequestAttributesSequence": "X",
    "RequestedProcedureDescription": "X",
    "PlacerOrderNumberImagingServiceRequest": "Z",
    "FillerOrderNumberImagingServiceRequest": "Z",
    "PerformedProcedureStepID": "X",
    "PerformedProcedureStepDescription": "X",
    "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X",
    "PerformedProcedureStepEndDate": "X",
    "PerformedProcedureStepEndTime": "X",
    "PerformedLocation": "X",
    "PerformedStationName": "X",
    "PerformedStationAETitle": "X",
    "ReferencedStudySequence": "X",
    "ReferencedPerformedProcedureStepSequence": "X",
    "ReferencedImageSequence": "X",
    "SourceImageSequence": "X",
    # People.
    "ReferringPhysicianName": "Z",
    "ReferringPhysicianAddress": "X",
    "ReferringPhysicianTelephoneNumbers": "X",
    "ReferringPhysicianIdentificationSequence": "X",
    "PhysiciansOfRecord": "X",
    "PhysiciansOfRecordIdentificationSequence": "X",
    "PerformingPhysicianName": "X",
    "PerformingPhysicianIdentificationSequence": "X",
    "NameOfPhysiciansReadingStudy": "X",
    "PhysiciansReadingStudyIdentificationSequence": "X",
    "OperatorsName": "X",
    "OperatorIdentificationSequence": "X",
    "ContentCreatorName": "Z",
    "ContentCreatorIdentificationCodeSequence": "X",
    "PersonName": "D",
    "VerifyingObserverName": "D",
    "VerifyingOrganization": "X",
    "VerifyingObserverIdentificationCodeSequence": "Z",
    "VerificationDateTime": "D",
    "ObservationDateTime": "X",
    # Institution and equipment.
    "InstitutionName": "X",
    "InstitutionAddress": "X",
    "InstitutionalDepartmentName": "X",
    "InstitutionCodeSequence": "X",
    "StationName": "X",
    "DeviceSerialNumber": "X",
    "DetectorID": "X",
    "GantryID": "X",
    "PlateID": "X",
    "CassetteID": "X",
    "AcquisitionDeviceProcessingDescription": "X",
    # Dates and times.
    "StudyDate": "Z",
    "StudyTime": "Z",
    "SeriesDate": "X",
    "SeriesTime": "X",
    "AcquisitionDate": "X",
    "AcquisitionTime": "X",
    "AcquisitionDateTime": "X",
    "ContentDate": "Z",
    "ContentTime": "Z",
    "InstanceCreationDate": "X",
    "InstanceCreationTime": "X",
    "OverlayDate": "X",
    "OverlayTime": "X",
    "CurveDate": "X",
    "CurveTime": "X",
    "TimezoneOffsetFromUTC": "X",
    "Date": "D",
    "Time": "D",
    "DateTime": "D",
    # Free text that can name anyone.
    "ImageComments": "X",
    "FrameComments": "X",
    "AcquisitionComments": "X",
    "DerivationDescription": "X",
    "ContrastBolusAgent": "Z",
    "TextValue": "X",
    "ContentSequence": "X",
    # The table says D for Graphic Annotation Sequence; removing it is stricter and simpler
    # than inventing dummy graphics.
    "GraphicAnnotationSequence": "X",
    "DigitalSignaturesSequence": "X",
    "OriginalAttributesSequence": "X",
    "DataSetTrailingPadding": "X",
    # UIDs that link the file back to the source archive.
    "StudyInstanceUID": "U",
    "SeriesInstanceUID": "U",
    "SOPInstanceUID": "U",
    "FrameOfReferenceUID": "U",
    "ReferencedSOPInstanceUID": "U",
    "ReferencedFrameOfReferenceUID": "U",
    "RelatedFrameOfReferenceUID": "U",
    "SynchronizationFrameOfReferenceUID": "U",
    "InstanceCreatorUID": "U",
    "IrradiationEventUID": "U",
    "ConcatenationUID": "U",
    "DimensionOrganizationUID": "U",
    "StorageMediaFileSetUID": "U",
    "UID": "U",
    "DoseReferenceUID": "U",
    "TargetUID": "U",
    "TransactionUID": "U",
    "FiducialUID": "U",
    "DeviceUID": "U",
    "FailedSOPInstanceUIDList": "U",
    "PresentationDisplayCollectionUID": "U",
    "PresentationSequenceCollectionUID": "U",
    "TemplateExtensionOrganizationUID": "U",
    "TemplateExtensionCreatorUID": "U",
    "SpecimenUID": "U",
    "ReferencedSOPInstanceUIDInFile": "U",
    "PaletteColorLookupTableUID": "U",
    "LargePaletteColorLookupTableUID": "U",
    "SourceFrameOfReferenceUID": "U",
    "TrackingUID": "U",
    "ObservationUID": "U",
    "SOPInstanceUIDOfConcatenationSource": "U",
    # Further Table E.1-1 rows: patient, visit and order details, the people around them,
    # reporting and media attributes. Listed separately only to keep the groups above short.
    "IssuerOfPatientIDQualifiersSequence": "X",
    "SourcePatientGroupIdentificationSequence": "X",
    "GroupOfPatientsIdentificationSequence": "X",
    "PatientBirthDateInAlternativeCalendar": "X",
    "PatientDeathDateInAlternativeCalendar": "X",
    "PatientAlternativeCalendar": "X",
    "PatientPrimaryLanguageCodeSequence": "X",
    "PatientPrimaryLanguageModifierCodeSequence": "X",
    "PatientTelecomInformation": "X",
    "PatientTransportArrangements": "X",
    "ReferencedPatientPhotoSequence": "X",
    "ReferencedPatientAliasSequence": "X",
    "InsurancePlanIdentification": "X",
    "IssuerOfAdmissionIDSequence": "X",
    "AdmittingDate": "X",
    "AdmittingTime": "X",
    "DischargeDiagnosisDescription": "X",
    "SpecialNeeds": "X",
    "ServiceEpisodeID": "X",
    "ServiceEpisodeDescription": "X",
    "StudyIDIssuer": "X",
    "RequestedContrastAgent": "X",
    "RequestedProcedureID": "X",
    "RequestedProcedureComments": "X",
    "RequestedProcedureLocation": "X",
    "ReasonForTheRequestedProcedure": "X",
    "ReasonForTheImagingServiceRequest": "X",
    "ImagingServiceRequestComments": "X",
    "PlacerOrderNumberProcedure": "X",
    "FillerOrderNumberProcedure": "X",
    "OrderEnteredBy": "X",
    "OrderEntererLocation": "X",
    "OrderCallbackPhoneNumber": "X",
    "OrderCallbackTelecomInformation": "X",
    "NamesOfIntendedRecipientsOfResults": "X",
    "IntendedRecipientsOfResultsIdentificationSequence": "X",
    "ScheduledStationAETitle": "X",
    "ScheduledProcedureStepStartDate": "X",
    "ScheduledProcedureStepStartTime": "X",
    "ScheduledProcedureStepEndDate": "X",
    "ScheduledProcedureStepEndTime": "X",
    "ScheduledPerformingPhysicianName": "X",
    "ScheduledPerformingPhysicianIdentificationSequence": "X",
    "ScheduledProcedureStepDescription": "X",
    "ScheduledProcedureStepID": "X",
    "ScheduledStationName": "X",
    "ScheduledProcedureStepLocation": "X",
    "ScheduledStationNameCodeSequence": "X",
    "ScheduledStationGeographicLocationCodeSequence": "X",
    "ScheduledHumanPerformersSequence": "X",
    "PerformedStationNameCodeSequence": "X",
    "PerformedStationGeographicLocationCodeSequence": "X",
    "CommentsOnThePerformedProcedureStep": "X",
    "AcquisitionContextSequence": "X",
    "HumanPerformerCodeSequence": "X",
    "HumanPerformerOrganization": "X",
    "HumanPerformerName": "X",
    "ActualHumanPerformersSequence": "X",
    "ConsultingPhysicianName": "X",
    "ConsultingPhysicianIdentificationSequence": "X",
    "PersonIdentificationCodeSequence": "D",
    "PersonAddress": "X",
    "PersonTelephoneNumbers": "X",
    "AuthorObserverSequence": "X",
    "ParticipantSequence": "X",
    "CustodialOrganizationSequence": "X",
    "ContainerIdentifier": "Z",
    "SpecimenAccessionNumber": "X",
    "SpecimenIdentifier": "Z",
    "StartAcquisitionDateTime": "X",
    "EndAcquisitionDateTime": "X",
    "InstanceCoercionDateTime": "X",
    "DeviceDescription": "X",
    "LabelText": "X",
    "BarcodeValue": "X",
    "ReviewerName": "X",
    "ResultsIDIssuer": "X",
    "InterpretationRecorder": "X",
    "InterpretationTranscriber": "X",
    "InterpretationAuthor": "X",
    "InterpretationApproverSequence": "X",
    "PhysicianApprovingInterpretation": "X",
    "InterpretationIDIssuer": "X",
    "DistributionName": "X",
    "DistributionAddress": "X",
    "ResultsComments": "X",
    "TextString": "X",
    "TextComments": "X",
    "Arbitrary": "X",
    "ModifiedAttributesSequence": "X",
    "ReferencedDigitalSignatureSequence": "X",
    "ReferencedSOPInstanceMACSequence": "X",
    "MAC": "X",
    "StorageMediaFileSetID": "X",
    # A thumbnail of the image: it shows whatever burned-in text the pixels show.
    "IconImageSequence": "X",
    "TopicTitle": "X",
    "TopicSubject": "X",
    "TopicAuthor": "X",
    "TopicKeywords": "X",
}

#: Value representations cleaned even where the table has no row for the attribute: a person
#: name or a date/time anywhere in the file (vendor-neutral attributes the table misses, newer
#: attributes than its edition) is emptied, so "no names, no dates" holds for every file.
_ALWAYS_EMPTIED_VRS: Final = frozenset({"PN", "DA", "DT", "TM"})

# Dummy values by VR for the profile's "D" action: valid for the VR and meaningless.
_DUMMIES: Final[dict[str, Any]] = {
    "PN": "ANONYMOUS",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
}

# Modalities whose pixels commonly carry burned-in names and dates when the header is silent.
_BURN_IN_PRONE: Final = frozenset({"US", "OT", "SC", "XC", "ES", "DOC", "IVUS", "GM", "SM"})

_PIXEL_KEYWORDS: Final = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PREAMBLE_LENGTH: Final = 128


@dataclass
class DeidReport:
    """What de-identification did, by attribute keyword; never any attribute's value."""

    profile: str = PROFILE_NAME
    removed: set[str] = field(default_factory=set)
    emptied: set[str] = field(default_factory=set)
    dummied: set[str] = field(default_factory=set)
    uids_replaced: set[str] = field(default_factory=set)
    private_tags_removed: int = 0
    groups_removed: set[str] = field(default_factory=set)
    #: The header's Burned In Annotation (0028,0301): "YES", "NO" or None when absent.
    burned_in_annotation: str | None = None
    #: True when the pixels may still show identifying text header cleaning cannot remove.
    pixels_may_identify: bool = False
    descriptions_retained: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "removed": sorted(self.removed),
            "emptied": sorted(self.emptied),
            "dummied": sorted(self.dummied),
            "uids_replaced": sorted(self.uids_replaced),
            "private_tags_removed": self.private_tags_removed,
            "groups_removed": sorted(self.groups_removed),
            "burned_in_annotation": self.burned_in_annotation,
            "pixels_may_identify": self.pixels_may_identify,
            "descriptions_retained": self.descriptions_retained,
            "notes": list(self.notes),
        }


class _UidMapper:
    """Maps each original UID to a new one, the same output for the same input.

    The new UID is derived from a salt and the old UID (``generate_uid`` with entropy
    sources), so two files of one study de-identified with the same salt keep a shared Study
    Instance UID, while nobody without the salt can recompute the mapping.
    """

    def __init__(self, salt: bytes) -> None:
        self._salt = salt.hex()
        self._seen: dict[str, UID] = {}

    def __call__(self, uid: str) -> UID:
        if uid not in self._seen:
            self._seen[uid] = generate_uid(entropy_srcs=[self._salt, uid])
        return self._seen[uid]


def _is_curve_or_overlay(tag: BaseTag) -> str | None:
    group = tag.group
    # Repeating groups 50xx (curves, retired) and 60xx (overlays): even groups only.
    if group % 2 == 0 and (0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF):
        return "curves" if group < 0x6000 else "overlays"
    return None


def _walk_clean(ds: Dataset, report: DeidReport, uids: _UidMapper, actions: dict[str, str]) -> None:
    for elem in list(ds):
        tag = elem.tag
        if tag.is_private:
            del ds[tag]
            report.private_tags_removed += 1
            continue
        kind = _is_curve_or_overlay(tag)
        if kind is not None:
            del ds[tag]
            report.groups_removed.add(f"{kind} ({tag.group:04X})")
            continue
        action = actions.get(elem.keyword)
        if action == "X":
            del ds[tag]
            report.removed.add(elem.keyword)
            continue
        if action == "Z":
            elem.value = [] if elem.VR == "SQ" else None
            report.emptied.add(elem.keyword)
        elif action == "D":
            _dummy(elem)
            report.dummied.add(elem.keyword)
        elif action == "U":
            _replace_uid(elem, uids)
            report.uids_replaced.add(elem.keyword)
        elif action is None and elem.VR in _ALWAYS_EMPTIED_VRS and elem.value not in (None, ""):
            elem.value = None
            report.emptied.add(elem.keyword or str(tag))
        if elem.VR == "SQ" and elem.value:
            for item in elem.value:
                _walk_clean(item, report, uids, actions)


def _dummy(elem: DataElement) -> None:
    if elem.VR == "SQ":
        elem.value = Sequence()
    elif elem.VR in _DUMMIES:
        elem.value = _DUMMIES[elem.VR]
    elif elem.VR in {"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}:
        elem.value = 0
    else:
        elem.value = "ANONYMIZED"


def _replace_uid(elem: DataElement, uids: _UidMapper) -> None:
    value = elem.value
    if not value:
        return
    if isinstance(value, MultiValue | list):
        elem.value = [uids(str(v)) for v in value]
    else:
        elem.value = uids(str(value))


def _deidentify_in_place(
    ds: Dataset, *, salt: bytes | None = None, keep_descriptions: bool = False
) -> DeidReport:
    report = DeidReport(descriptions_retained=keep_descriptions)
    burned = ds.get("BurnedInAnnotation")
    report.burned_in_annotation = str(burned).upper() if burned else None
    modality = str(ds.get("Modality", "")).upper()
    if report.burned_in_annotation == "YES":
        report.pixels_may_identify = True
        report.notes.append(
            "Burned In Annotation is YES: the pixels may still show names, IDs or dates; "
            "header de-identification cannot remove them."
        )
    elif report.burned_in_annotation is None and modality in _BURN_IN_PRONE:
        report.pixels_may_identify = True
        report.notes.append(
            f"Burned In Annotation is not stated and {modality} images often carry burned-in "
            "text: the pixels may still identify the patient."
        )
    actions = dict(BASIC_PROFILE_ACTIONS)
    if keep_descriptions:
        actions.pop("StudyDescription")
        actions.pop("SeriesDescription")
    uids = _UidMapper(salt if salt is not None else os.urandom(16))
    _walk_clean(ds, report, uids, actions)

    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEID_METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = PROFILE_CODE
    ds.DeidentificationMethodCodeSequence = Sequence([code])

    # File meta: keep what decoding needs, point at the new SOP Instance UID, and drop the
    # sending application's AE title (it names a device at the source site).
    old_meta = getattr(ds, "file_meta", None)
    meta = FileMetaDataset()
    if old_meta is not None:
        for keyword in ("TransferSyntaxUID", "MediaStorageSOPClassUID"):
            if keyword in old_meta:
                setattr(meta, keyword, old_meta[keyword].value)
        if "SourceApplicationEntityTitle" in old_meta:
            report.removed.add("SourceApplicationEntityTitle")
    if "SOPClassUID" in ds and "MediaStorageSOPClassUID" not in meta:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        report.uids_replaced.add("MediaStorageSOPInstanceUID")
    ds.file_meta = meta
    # The 128-byte preamble is free-form and can hold anything (e.g. a TIFF header).
    ds.preamble = b"\0" * _PREAMBLE_LENGTH
    return report


def deidentify(
    ds: Dataset, *, salt: bytes | None = None, keep_descriptions: bool = False
) -> tuple[Dataset, DeidReport]:
    """A de-identified copy of ``ds`` and what was done; ``ds`` itself is not changed.

    Applies PS3.15 Annex E Table E.1-1 (basic profile) recursively through sequences,
    removes private tags and curve/overlay groups, and records Patient Identity Removed,
    De-identification Method and its code sequence (113100, DCM). ``salt`` fixes the UID
    mapping across calls (use one secret per user or study); without it each call draws a
    fresh salt, so UIDs are consistent only within that call.
    """
    clean = copy.deepcopy(ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = _deidentify_in_place(clean, salt=salt, keep_descriptions=keep_descriptions)
    return clean, report


# --- reading ---------------------------------------------------------------------------------


class _ProbedBytes(io.BytesIO):
    """A BytesIO that notices short reads: pydicom stops quietly at a truncated element."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.short_reads: list[tuple[int, int]] = []

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        if size is not None and size > 0 and len(chunk) < size:
            self.short_reads.append((size, len(chunk)))
        return chunk


def _truncated(probe: _ProbedBytes) -> bool:
    # A clean end of file is a single zero-length read where the next element header would
    # start. A partial read anywhere, or more than one failed read, means the file was cut.
    if any(got > 0 for _, got in probe.short_reads):
        return True
    return len(probe.short_reads) > 1


def _expected_native_bytes(ds: Dataset, frames: int) -> int | None:
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        spp = int(ds.get("SamplesPerPixel", 1))
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return None
    if str(ds.get("PhotometricInterpretation", "")).upper() == "YBR_FULL_422":
        spp = 2  # chroma subsampled two to one horizontally: 2 samples per pixel on average
    total_bits = rows * cols * frames * spp * bits
    return (total_bits + 7) // 8


def _frame_count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list | tuple):
        if not value:
            return None
        value = value[0]
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip() or None


def _numbers(ds: Dataset, keyword: str) -> list[float] | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    values = value if isinstance(value, MultiValue | list | tuple) else [value]
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        return None


def _integer(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _metadata(ds: Dataset, *, frames: int, keep_descriptions: bool) -> dict[str, Any]:
    """Acquisition facts only, read before cleaning; nothing here identifies the patient."""
    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    sop_class = ds.get("SOPClassUID")
    study_date = str(ds.get("StudyDate") or "")
    return {
        "modality": _text(ds, "Modality"),
        "sop_class": UID(str(sop_class)).name if sop_class else None,
        "body_part_examined": _text(ds, "BodyPartExamined"),
        "study_description": _text(ds, "StudyDescription") if keep_descriptions else None,
        "series_description": _text(ds, "SeriesDescription") if keep_descriptions else None,
        # Year only: the full date is a quasi-identifier and is emptied in the stored file.
        "study_year": int(study_date[:4]) if study_date[:4].isdigit() else None,
        "manufacturer": _text(ds, "Manufacturer"),
        "manufacturer_model": _text(ds, "ManufacturerModelName"),
        "rows": _integer(ds, "Rows"),
        "columns": _integer(ds, "Columns"),
        "frames": frames,
        "photometric_interpretation": _text(ds, "PhotometricInterpretation"),
        "samples_per_pixel": _integer(ds, "SamplesPerPixel"),
        "bits_allocated": _integer(ds, "BitsAllocated"),
        "bits_stored": _integer(ds, "BitsStored"),
        "pixel_spacing_mm": _numbers(ds, "PixelSpacing"),
        "slice_thickness_mm": _first(ds.get("SliceThickness")),
        "window_center": _first(ds.get("WindowCenter")),
        "window_width": _first(ds.get("WindowWidth")),
        "transfer_syntax": UID(str(tsyntax)).name if tsyntax else None,
        "burned_in_annotation": _text(ds, "BurnedInAnnotation"),
    }


@dataclass(frozen=True, eq=False)
class DicomStudy:
    """One de-identified DICOM instance: what is stored, shown and previewed."""

    metadata: dict[str, Any]
    has_pixels: bool
    frames: int
    #: The de-identified dataset; the original is not kept.
    clean: Dataset
    report: DeidReport
    #: Why the pixels cannot be decoded here (e.g. no JPEG-LS plugin), or None.
    pixel_problem: str | None = None

    def to_bytes(self) -> bytes:
        """The de-identified DICOM file (Part 10, zeroed preamble): what gets stored."""
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pydicom.dcmwrite(buffer, self.clean, enforce_file_format=True)
        return buffer.getvalue()

    def to_dict(self) -> dict[str, Any]:
        return {
            "metadata": dict(self.metadata),
            "has_pixels": self.has_pixels,
            "frames": self.frames,
            "pixels_decodable": self.has_pixels and self.pixel_problem is None,
            "pixel_problem": self.pixel_problem,
            "deidentification": self.report.to_dict(),
        }


def _pixel_problem(ds: Dataset) -> str | None:
    meta = getattr(ds, "file_meta", None)
    tsyntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if not tsyntax:
        return None
    uid = UID(str(tsyntax))
    if not uid.is_compressed:
        return None
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"DICOM with compressed pixel data that cannot be decoded ({uid.name})"
    if not decoder.is_available:
        return f"DICOM with compressed pixel data that cannot be decoded ({uid.name})"
    return None


def read_dicom(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    salt: bytes | None = None,
    keep_descriptions: bool = False,
) -> DicomStudy:
    """Parse an uploaded DICOM file, check its size, and de-identify it.

    Only Part 10 files (128-byte preamble then ``DICM``) are accepted, so arbitrary bytes are
    never guessed at as a raw dataset. The pixel budget (rows × columns × frames) is checked
    from the header before any pixel data is decoded, so a hostile header cannot make us
    allocate gigabytes. Pixels are decoded only by :func:`preview_png`.
    """
    if not data:
        raise InputError("empty DICOM upload", code="image_empty")
    if len(data) > max_bytes:
        raise InputError(
            "DICOM file too large", code="image_too_large", size=len(data), limit=max_bytes
        )
    if len(data) < _PREAMBLE_LENGTH + 4 or data[_PREAMBLE_LENGTH : _PREAMBLE_LENGTH + 4] != b"DICM":
        raise InputError(
            "not a DICOM Part 10 file (no DICM prefix)", code="image_unsupported_format"
        )
    with warnings.catch_warnings():
        # pydicom warns about odd-but-readable values (and converts values lazily, so the
        # warnings come while we inspect too); they are not the user's problem.
        warnings.simplefilter("ignore")
        try:
            return _parse(data, max_pixels, salt, keep_descriptions)
        except (ValueError, TypeError, KeyError, struct.error) as exc:
            raise InputError("DICOM header values are damaged", code="image_corrupt") from exc


def _parse(data: bytes, max_pixels: int, salt: bytes | None, keep_descriptions: bool) -> DicomStudy:
    probe = _ProbedBytes(data)
    try:
        ds = pydicom.dcmread(probe, force=False)
    except InvalidDicomError as exc:
        raise InputError("not a readable DICOM file", code="image_corrupt") from exc
    except (EOFError, OSError, ValueError, KeyError, TypeError, struct.error, zlib.error) as exc:
        raise InputError("DICOM file is damaged or truncated", code="image_corrupt") from exc
    meta = getattr(ds, "file_meta", None)
    if _truncated(probe) or meta is None or "TransferSyntaxUID" not in meta or len(ds) == 0:
        raise InputError("DICOM file is truncated", code="image_corrupt")

    if not ds.get("SOPClassUID") or not ds.get("SOPInstanceUID"):
        # Type 1 in every composite IOD; without them the file cannot be stored as DICOM.
        raise InputError("DICOM file without SOP Class/Instance UID", code="image_corrupt")
    has_pixels = any(k in ds for k in _PIXEL_KEYWORDS)
    frames = _frame_count(ds) if has_pixels else 0
    if has_pixels:
        rows, cols = _integer(ds, "Rows") or 0, _integer(ds, "Columns") or 0
        if rows <= 0 or cols <= 0:
            raise InputError("DICOM pixel data without image size", code="image_corrupt")
        if rows * cols * frames > max_pixels:
            raise InputError(
                "DICOM image has too many pixels",
                code="image_too_many_pixels",
                width=cols,
                height=rows,
                limit=_megapixels(max_pixels),
            )
        if not UID(str(meta.TransferSyntaxUID)).is_compressed and "PixelData" in ds:
            expected = _expected_native_bytes(ds, frames)
            if expected is not None and len(ds.PixelData) < expected:
                raise InputError("DICOM pixel data is truncated", code="image_corrupt")
    # An image header that ends cleanly without Pixel Data (a "header only" export, or a
    # structured report) is read, cleaned and reported with ``has_pixels=False``: what is
    # missing is the picture, and callers answer ``dicom_no_pixels``. A cut inside an
    # element is caught above as truncation.

    metadata = _metadata(ds, frames=frames, keep_descriptions=keep_descriptions)
    problem = _pixel_problem(ds) if has_pixels else None
    report = _deidentify_in_place(ds, salt=salt, keep_descriptions=keep_descriptions)
    return DicomStudy(
        metadata=metadata,
        has_pixels=has_pixels,
        frames=frames,
        clean=ds,
        report=report,
        pixel_problem=problem,
    )


def _megapixels(pixels: int) -> float | int:
    value = pixels / 1_000_000
    return int(value) if value.is_integer() else round(value, 1)


# --- rendering -------------------------------------------------------------------------------


def _decode_frame(study: DicomStudy, index: int) -> NDArray[Any]:
    if not study.has_pixels:
        raise InputError("DICOM without pixel data", code="dicom_no_pixels")
    if study.pixel_problem is not None:
        raise InputError(study.pixel_problem, code="image_unsupported_format")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            index_arg = index if study.frames > 1 else None
            return pixel_array(study.clean, index=index_arg, as_rgb=True)
    except (NotImplementedError, RuntimeError) as exc:
        # The plugin exists but refuses this stream (12-bit JPEG in Pillow, say).
        syntax = study.metadata.get("transfer_syntax") or "unknown transfer syntax"
        raise InputError(
            f"DICOM with compressed pixel data that cannot be decoded ({syntax})",
            code="image_unsupported_format",
        ) from exc
    except (ValueError, IndexError, KeyError, AttributeError, TypeError) as exc:
        raise InputError("DICOM pixel data is damaged", code="image_corrupt") from exc


def _window(values: NDArray[np.float64], ds: Dataset) -> NDArray[np.uint8]:
    """Map modality values to 0–255 with the file's window, else a robust percentile window.

    The linear and sigmoid functions are those of PS3.3 C.11.2.1.2 (VOI LUT Function).
    """
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
    if center is not None and width is not None and width >= 1:
        if function == "SIGMOID":
            scaled = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
        elif function == "LINEAR_EXACT":
            scaled = (values - (center - width / 2)) / width
        else:
            scaled = (values - (center - 0.5)) / (width - 1) + 0.5
    else:
        finite = values[np.isfinite(values)]
        low, high = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
        if high <= low:
            high = low + 1.0
        scaled = (values - low) / (high - low)
    return np.asarray(np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5, dtype=np.uint8)


def _to_8bit_rgb(arr: NDArray[Any], ds: Dataset) -> NDArray[np.uint8]:
    bits = _integer(ds, "BitsStored") or _integer(ds, "BitsAllocated") or 8
    peak = float(2**bits - 1) if bits > 8 else 255.0
    return np.asarray(np.clip(arr.astype(np.float64) / peak * 255.0 + 0.5, 0, 255), np.uint8)


def _render(arr: NDArray[Any], ds: Dataset) -> NDArray[np.uint8]:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return _to_8bit_rgb(rgb, ds) if rgb.dtype != np.uint8 else np.asarray(rgb, np.uint8)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        # RGB, or YBR converted to RGB by the decoder (as_rgb=True).
        return arr if arr.dtype == np.uint8 else _to_8bit_rgb(arr, ds)
    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    grey = _window(values, ds)
    if photometric == "MONOCHROME1":
        # MONOCHROME1 shows its minimum as white.
        grey = np.asarray(255 - grey, dtype=np.uint8)
    return grey


def _png(pixels: NDArray[np.uint8], max_side: int) -> bytes:
    image = Image.fromarray(pixels)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def preview_png(study: DicomStudy, *, frame: int | None = None, max_side: int = 1024) -> bytes:
    """One frame as an 8-bit PNG no larger than ``max_side`` (default: the middle frame).

    Greyscale images go through the modality LUT (rescale slope/intercept) and then the
    file's own window, because that is what the acquiring site chose to look at; without one
    a 0.5–99.5 percentile window keeps a few extreme pixels from flattening the picture.
    """
    index = study.frames // 2 if frame is None else frame
    if study.has_pixels and not 0 <= index < study.frames:
        raise InputError(f"frame {index} out of range", code="invalid_event")
    arr = _decode_frame(study, index)
    return _png(_render(arr, study.clean), max_side)


def frames_png(study: DicomStudy, *, count: int = 9, max_side: int = 512) -> list[bytes]:
    """Up to ``count`` evenly spaced frames as PNGs, first to last, for a contact sheet."""
    if not study.has_pixels:
        raise InputError("DICOM without pixel data", code="dicom_no_pixels")
    picks = sorted({round(float(i)) for i in np.linspace(0, study.frames - 1, max(1, count))})
    return [preview_png(study, frame=i, max_side=max_side) for i in picks]
