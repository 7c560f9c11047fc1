"""Synthetic studies made from one real file: new UIDs and patient/study attributes, same pixels."""

import pydicom
from pydicom.uid import generate_uid


def synthetic_study(source, *, patient_name: str, patient_id: str, accession: str, study_date: str,
                    description: str, modality: str = "MR", birth_date: str = "19800101") -> pydicom.Dataset:
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date
    ds.AccessionNumber = accession
    ds.StudyDate = study_date
    ds.StudyDescription = description
    ds.Modality = modality
    return ds
