"""De-identification of DICOM files: the Basic Application Level Confidentiality Profile.

``deidentify`` applies DICOM PS3.15 Annex E (Table E.1-1, basic profile column, without the retain
options): identifying attributes are removed (X) or emptied (Z), instance UIDs are replaced by new
ones (U) derived from a secret salt so that references between files of one study stay consistent,
private elements, curves and overlays are removed, and, beyond the table, every person name, date and
time left anywhere (sequences included) is emptied. Pixel data is kept as it is: text burned into the
pixels is not removed, so ``identifying_elements`` reports ``BurnedInAnnotation`` = YES as a risk.

``identifying_elements`` is the check: it names (never prints the values of) every element that
still identifies. Reference: https://dicom.nema.org/medical/dicom/current/output/chtml/part15/chapter_E.html
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
from pathlib import Path

from doctorsun.errors import DoctorSunError
from doctorsun.files import atomic_path

_X = """AcquisitionComments AcquisitionContextSequence AcquisitionDateTime AcquisitionDeviceProcessingDescription
ActualHumanPerformersSequence AdditionalPatientHistory AdmissionID AdmittingDate AdmittingDiagnosesCodeSequence
AdmittingDiagnosesDescription AdmittingTime AffectedSOPInstanceUID Allergies AuthorObserverSequence
BranchOfService CassetteID CommentsOnThePerformedProcedureStep ConfidentialityConstraintOnPatientDataDescription
ContentCreatorIdentificationCodeSequence ContributionDescription CountryOfResidence CurrentPatientLocation
CustodialOrganizationSequence DataSetTrailingPadding DerivationDescription DetectorID DeviceSerialNumber
DigitalSignatureUID DigitalSignaturesSequence DischargeDiagnosisDescription DistributionAddress
DistributionName EthnicGroup FrameComments GantryID GeneratorID GraphicAnnotationSequence HumanPerformerName
HumanPerformerOrganization IconImageSequence IdentifyingComments ImageComments ImagePresentationComments
ImagingServiceRequestComments Impressions InstanceCreationDate InstanceCreationTime InstitutionAddress
InstitutionCodeSequence InstitutionName InstitutionalDepartmentName InsurancePlanIdentification
IntendedRecipientsOfResultsIdentificationSequence InterpretationApproverSequence InterpretationAuthor
InterpretationDiagnosisDescription InterpretationIDIssuer InterpretationRecorder InterpretationText
InterpretationTranscriber IssuerOfAdmissionID IssuerOfPatientID IssuerOfServiceEpisodeID MAC MedicalAlerts
MedicalRecordLocator MilitaryRank ModifiedAttributesSequence ModifiedImageDescription ModifyingDeviceID
ModifyingDeviceManufacturer NameOfPhysiciansReadingStudy NamesOfIntendedRecipientsOfResults Occupation
OperatorIdentificationSequence OperatorsName OrderCallbackPhoneNumber OrderEnteredBy OrderEntererLocation
OriginalAttributesSequence OtherPatientIDs OtherPatientIDsSequence OtherPatientNames ParticipantSequence
PatientAddress PatientAge PatientBirthName PatientBirthTime PatientComments PatientInstitutionResidence
PatientInsurancePlanCodeSequence PatientMotherBirthName PatientPrimaryLanguageCodeSequence
PatientPrimaryLanguageModifierCodeSequence PatientReligiousPreference PatientSexNeutered PatientSize
PatientState PatientTelephoneNumbers PatientTransportArrangements PatientWeight PerformedLocation
PerformedProcedureStepDescription PerformedProcedureStepID PerformedProcedureStepStartDate
PerformedProcedureStepStartTime PerformedStationAETitle PerformedStationGeographicLocationCodeSequence
PerformedStationName PerformedStationNameCodeSequence PerformingPhysicianIdentificationSequence
PerformingPhysicianName PersonAddress PersonIdentificationCodeSequence PersonTelephoneNumbers
PhysicianApprovingInterpretation PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
PhysiciansReadingStudyIdentificationSequence PlateID PreMedication PregnancyStatus ProtocolName
ReasonForTheImagingServiceRequest ReasonForStudy ReferencedDigitalSignatureSequence
ReferencedPatientAliasSequence ReferencedPatientSequence ReferencedSOPInstanceMACSequence
ReferringPhysicianAddress ReferringPhysicianIdentificationSequence ReferringPhysicianTelephoneNumbers
RegionOfResidence RequestAttributesSequence RequestedContrastAgent RequestedProcedureComments
RequestedProcedureDescription RequestedProcedureID RequestedProcedureLocation RequestingPhysician
RequestingService ResponsibleOrganization ResponsiblePerson ResultsComments ResultsDistributionListSequence
ResultsIDIssuer ReviewerName ScheduledHumanPerformersSequence ScheduledPatientInstitutionResidence
ScheduledPerformingPhysicianIdentificationSequence ScheduledPerformingPhysicianName
ScheduledProcedureStepDescription ScheduledProcedureStepEndDate ScheduledProcedureStepEndTime
ScheduledProcedureStepLocation ScheduledProcedureStepStartDate ScheduledProcedureStepStartTime
ScheduledStationAETitle ScheduledStationGeographicLocationCodeSequence ScheduledStationName
ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle SeriesDate
SeriesDescription SeriesTime ServiceEpisodeDescription ServiceEpisodeID SmokingStatus SpecialNeeds StationName
StudyComments StudyDescription StudyIDIssuer TextComments TextString TimezoneOffsetFromUTC TopicAuthor
TopicKeywords TopicSubject TopicTitle VerifyingOrganization VisitComments"""

_Z = """AccessionNumber AcquisitionDate AcquisitionTime ContentCreatorName ContentDate ContentTime
ContrastBolusAgent FillerOrderNumberImagingServiceRequest PatientBirthDate PatientID PatientName PatientSex
PlacerOrderNumberImagingServiceRequest ReferringPhysicianName StudyDate StudyID StudyTime
VerifyingObserverIdentificationCodeSequence VerifyingObserverName"""

_U = """ConcatenationUID ContextGroupExtensionCreatorUID CreatorVersionUID DeviceUID DimensionOrganizationUID
DoseReferenceUID FailedSOPInstanceUIDList FiducialUID FrameOfReferenceUID InstanceCreatorUID
IrradiationEventUID LargePaletteColorLookupTableUID MediaStorageSOPInstanceUID ReferencedFrameOfReferenceUID
ReferencedGeneralPurposeScheduledProcedureStepTransactionUID ReferencedSOPInstanceUID
ReferencedSOPInstanceUIDInFile RelatedFrameOfReferenceUID RequestedSOPInstanceUID SeriesInstanceUID
SOPInstanceUID StorageMediaFileSetUID StudyInstanceUID SynchronizationFrameOfReferenceUID
TemplateExtensionCreatorUID TemplateExtensionOrganizationUID TransactionUID UID"""

PROFILE: dict[str, str] = {
    **{k: "X" for k in _X.split()},
    **{k: "Z" for k in _Z.split()},
    **{k: "U" for k in _U.split()},
}
"""Keyword -> action (X remove, Z empty, U new UID) of PS3.15 Table E.1-1, basic profile."""

KEEP_UIDS = ("ClassUID", "TransferSyntaxUID", "ClassUIDInFile", "TransferSyntaxUIDInFile")
"""UIDs that name a kind of thing (SOP class, transfer syntax), not an instance: never identifying."""

METHOD = "PS3.15 E.1 Basic Confidentiality Profile (doctorsun)"


def deidentify(ds, *, salt: str | None = None, pseudonym: str = ""):
    """A de-identified copy of the pydicom ``Dataset`` ``ds`` (``ds`` itself is not changed).

    ``salt`` keys the UID replacement: the same salt maps the same UID to the same new UID, so pass one
    secret salt for all files of a study to keep their cross-references; without it a random one is used.
    ``pseudonym`` (e.g. a study subject code) becomes PatientName and PatientID instead of empty values.
    """
    from pydicom.dataset import Dataset

    if not isinstance(ds, Dataset):
        raise DoctorSunError(f"deidentify needs a pydicom Dataset, not {type(ds).__name__}")
    salt = secrets.token_hex(16) if salt is None else salt
    out = copy.deepcopy(ds)
    _clean(out, salt)
    if getattr(out, "file_meta", None) is not None:
        _clean(out.file_meta, salt)
    if pseudonym:
        out.PatientName = pseudonym
        out.PatientID = pseudonym
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = METHOD
    out.LongitudinalTemporalInformationModified = "REMOVED"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    out.DeidentificationMethodCodeSequence = [code]
    return out


def _new_uid(uid: str, salt: str) -> str:
    """``2.25.<128-bit keyed hash>`` (a UUID-form OID, PS3.5 B.2): same salt and UID, same new UID."""
    digest = hmac.new(salt.encode(), str(uid).strip().encode(), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _is_instance_uid(elem) -> bool:
    if elem.VR != "UI":
        return False
    if PROFILE.get(elem.keyword) == "U":
        return True
    from pydicom.uid import UID_dictionary

    keyword = elem.keyword or ""
    if keyword.endswith(KEEP_UIDS):
        return False
    values = [elem.value] if elem.VM <= 1 else list(elem.value)
    return any(v and str(v) not in UID_dictionary for v in values)  # registered UIDs name standards


def _overlay_or_curve(tag) -> bool:
    return (0x5000 <= tag.group <= 0x50FF or 0x6000 <= tag.group <= 0x60FF) and tag.group % 2 == 0


def _clean(ds, salt: str) -> None:
    for elem in list(ds):
        tag = elem.tag
        action = PROFILE.get(elem.keyword)
        if tag.is_private or _overlay_or_curve(tag) or action == "X":
            del ds[tag]
        elif elem.VR == "SQ":
            if action == "Z":
                elem.value = []
            for item in elem.value:
                _clean(item, salt)
        elif action == "Z" or elem.VR in ("PN", "DA", "DT", "TM"):
            elem.value = ""
        elif _is_instance_uid(elem):
            if elem.VM > 1:
                elem.value = [_new_uid(v, salt) for v in elem.value]
            elif elem.value:
                elem.value = _new_uid(elem.value, salt)


def identifying_elements(ds, pseudonym: str = "") -> list[str]:
    """Names (keyword or tag, with the path through sequences) of every element still identifying.

    Values are never included. Empty when ``ds`` passes the basic profile as applied by ``deidentify``
    (PatientName and PatientID may hold the ``pseudonym`` given there).
    """
    found = _identifying(ds, "", pseudonym)
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        found.append("PatientIdentityRemoved (not YES)")
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        found.append("BurnedInAnnotation (text in the pixels is not removed)")
    return found


def _identifying(ds, path: str, pseudonym: str) -> list[str]:
    found = []
    for elem in ds:
        name = path + (elem.keyword or str(elem.tag))
        action = PROFILE.get(elem.keyword)
        empty = elem.value in (None, "", b"") or (elem.VR == "SQ" and len(elem.value) == 0)
        if elem.tag.is_private or _overlay_or_curve(elem.tag) or action == "X":
            found.append(name)
        elif elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                found += _identifying(item, f"{name}[{i}].", pseudonym)
        elif elem.keyword in ("PatientName", "PatientID") and pseudonym and str(elem.value) == pseudonym:
            continue
        elif (action == "Z" or elem.VR in ("PN", "DA", "DT", "TM")) and not empty:
            found.append(name)
        elif _is_instance_uid(elem) and not empty and not str(elem.value).startswith("2.25."):
            found.append(name)
    return found


def deidentify_file(src: str | Path, dst: str | Path, *, salt: str | None = None,
                    pseudonym: str = "") -> Path:
    """Read ``src``, de-identify it and write ``dst`` atomically (pixel data byte-for-byte unchanged)."""
    from doctorsun.data.dicom import read_dataset

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise DoctorSunError(f"DICOM file not found: {src}")
    try:
        ds = read_dataset(src)
    except Exception as exc:
        from doctorsun.data.pixels import safe_reason

        raise DoctorSunError(f"cannot read DICOM file {src}: {safe_reason(exc)}") from None
    out = deidentify(ds, salt=salt, pseudonym=pseudonym)
    with atomic_path(dst) as tmp:
        out.save_as(tmp, enforce_file_format=False)
    return dst
