"""The report's Participants section: Table 1, the participant flow, the excluded
participants and the line on participants beyond the controls' ages.
"""

from __future__ import annotations

import pandas as pd

from . import tables
from .numbering import _Numbers


def _cohort(n: _Numbers, result, subjects: pd.DataFrame) -> str:
    if subjects.empty:
        return "<p>No participant was analysed (see the participant flow).</p>"
    cohort = n.table(
        tables.table1(subjects),
        "Demographic and clinical characteristics of the analysed participants. "
        f"{tables.ALL_MS}: clinically definite MS (RRMS, SPMS, PPMS, MS without phenotype); "
        "CIS is listed apart and not pooled in. IQR: interquartile range (EDSS: observed scores, "
        "the inverted empirical distribution function, no interpolation between steps); NBV: "
        "normalised brain volume (brain / intracranial volume). Last row: controls against "
        f"{tables.ALL_MS}, Welch's t-test (age, NBV) and the chi-square test (sex; "
        "Yates-corrected for two sexes, Fisher's exact test with an expected count below 5)."
        + (
            " PRL: paramagnetic rim lesion candidates per participant (prl_candidate of the "
            "lesion tables, scored on chi); not tested against controls, who have no lesions."
            if tables.has_prl(subjects)
            else ""
        ),
    )
    flow = n.table(
        tables.flow_table(result.flow),
        "Participant flow: every row of participants.tsv, analysed or excluded with the reason "
        "(group/participant_flow.tsv).",
        kind="S",
    )
    excluded = tables.exclusions_table(result.flow)
    listed = n.table(excluded, "Excluded participants.", kind="S", left=4) if len(excluded) else ""
    return cohort + _age_support(subjects) + flow + listed


def _age_support(subjects: pd.DataFrame) -> str:
    """One line: analysed participants beyond the controls' ages (subjects.tsv age_support)."""
    if "age_support" not in subjects:
        return ""
    counts = subjects["age_support"].value_counts()
    outside, beyond = int(counts.get("outside", 0)), int(counts.get("beyond_p5_p95", 0))
    if not outside and not beyond:
        return ""
    return (
        f"<p>Age support: {outside} analysed participant(s) are younger or older than every "
        f"control and {beyond} beyond the controls' 5th-95th age percentile; the age curves "
        "are straight lines there, so their age-corrected R2* and z-scores are extrapolated "
        "(flagged in group/subjects.tsv, age_support, and the participant flow).</p>"
    )
