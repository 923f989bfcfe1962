"""Column names of the EGD-CXR tables, in the order of the published files.

``master_sheet.csv`` has 59 columns; ``Normal``, ``CHF`` and ``pneumonia`` are 0/1 with exactly
one set. ``fixations.csv`` and ``eye_gaze.csv`` are Gazepoint exports (one row per fixation,
one row per 60 Hz sample) with the same columns: ``FPOGX``/``FPOGY`` are the point of gaze as
fractions of the 1920x1080 screen, ``FPOGD`` the fixation duration in seconds, and
``X_ORIGINAL``/``Y_ORIGINAL`` the column/row in the original DICOM pixel grid (negative or past
the image when the reader looked off it).
"""

DIAGNOSES = ("Normal", "CHF", "pneumonia")

REPORT_FINDINGS = (
    "consolidation",
    "enlarged_cardiac_silhouette",
    "linear__patchy_atelectasis",
    "lobar__segmental_collapse",
    "not_otherwise_specified_opacity___pleural__parenchymal_opacity__",
    "pleural_effusion_or_thickening",
    "pulmonary_edema__hazy_opacity",
    "normal_anatomically",
    "elevated_hemidiaphragm",
    "hyperaeration",
    "vascular_redistribution",
)

CHEXPERT_LABELS = (
    "atelectasis__chx",
    "cardiomegaly__chx",
    "consolidation__chx",
    "edema__chx",
    "enlarged_cardiomediastinum__chx",
    "fracture__chx",
    "lung_lesion__chx",
    "lung_opacity__chx",
    "no_finding__chx",
    "pleural_effusion__chx",
    "pleural_other__chx",
    "pneumonia__chx",
    "pneumothorax__chx",
    "support_devices__chx",
)

MASTER_SHEET = (
    "dicom_id", "path", "study_id", "patient_id", "stay_id", "gender", "anchor_age",
    "image_top_pad", "image_bottom_pad", "image_left_pad", "image_right_pad",
    *(f"dx{i}{suffix}" for i in range(1, 10) for suffix in ("", "_icd")),
    "normal_reports", *DIAGNOSES, *REPORT_FINDINGS, *CHEXPERT_LABELS, "cxr_exam_indication",
)

GAZEPOINT = (
    "SESSION_ID", "MEDIA_ID", "DICOM_ID", "CNT", "Time (in secs)", "TIMETICK(f=10000000)",
    "FPOGX", "FPOGY", "FPOGS", "FPOGD", "FPOGID", "FPOGV", "BPOGX", "BPOGY", "BPOGV",
    "LPCX", "LPCY", "LPD", "LPS", "LPV", "RPCX", "RPCY", "RPD", "RPS", "RPV",
    "BKID", "BKDUR", "BKPMIN", "LPMM", "LPMMV", "RPMM", "RPMMV",
    "SACCADE_MAG", "SACCADE_DIR", "VID_FRAME", "X_ORIGINAL", "Y_ORIGINAL",
)
FIXATIONS = GAZEPOINT
EYE_GAZE = GAZEPOINT

SCREEN = (1920, 1080)  # width, height of the reading-room display in pixels
