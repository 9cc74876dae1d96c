"""Columns of the group stage's longitudinal tables (change of R2* between sessions).

Part of the one column dictionary (:data:`ironmap.io._table_columns.TABLE_COLUMNS` gathers
them; :func:`ironmap.io.columns.describe` reads it). Descriptions follow docs/conventions.md.
"""

from __future__ import annotations

from .columns import (
    _PHENOTYPES,
    Column,
    _bool,
    _count,
    _p,
    _r2,
)

__all__ = ["LONGITUDINAL_COLUMNS"]

#: Longitudinal table kind -> columns whose meaning is particular to that table.
LONGITUDINAL_COLUMNS: dict[str, dict[str, Column]] = {
    "longitudinal": {
        "term": Column(
            "What the row estimates (docs/cohort.md#longitudinal-analysis)",
            levels={
                "annual_change": "mean yearly change of harmonised R2* of the arm, at its "
                "participants' own ages",
                "time_x_group": "yearly change of the arm minus that of the controls at equal "
                "age (group x time)",
                "edss_change": "change of harmonised R2* per EDSS point gained, over and above "
                "the yearly change (clinically definite MS)",
            },
        ),
        "arm": Column(
            "Participants the row is about (an arm, or an arm minus the controls)",
            levels={
                "HC": "healthy controls",
                "MS": "clinically definite MS (RRMS, SPMS, PPMS, MS without phenotype; CIS "
                "excluded): its phenotypes weighted by participants with follow-up",
                **_PHENOTYPES,
                **{f"{arm}-HC": f"{arm} minus HC" for arm in ("MS", *_PHENOTYPES)},
            },
        ),
        "estimate": Column(
            "Estimate, in the units of the units column (1/s per year or per EDSS point)",
            decimals=3,
        ),
        "ci_low": Column("Lower bound of the 95 % Wald confidence interval", decimals=3),
        "ci_high": Column("Upper bound of the 95 % Wald confidence interval", decimals=3),
        "p": _p("Two-sided Wald p-value (normal)"),
        "p_fdr": _p("p adjusted by Benjamini-Hochberg across regions within each term and arm"),
        "units": Column(
            "Units of estimate, ci_low, ci_high and se",
            levels={
                "1/s per year": "R2* change per year",
                "1/s per EDSS point": "R2* change per EDSS point",
            },
        ),
        "se": Column("Standard error of estimate (units column)", decimals=3),
        "n_participants": _count("Participants in the arm(s) of the row, any number of sessions"),
        "n_longitudinal": _count("Of them, participants with two or more timed sessions"),
        "n_sessions": _count("Sessions (with R2*) of these participants"),
        "followup_years": Column(
            "Median follow-up (last minus first session) of the participants with two or more "
            "sessions",
            "year",
            decimals=1,
        ),
        "slope_sd": Column(
            "SD of the participants' random slope: spread of yearly change around the model",
            "1/s per year",
            decimals=3,
        ),
        "residual_sd": _r2(
            "Within-participant residual SD of harmonised R2* (scan-rescan and measurement)"
        ),
        "converged": _bool("Whether the REML fit converged", "converged", "did not converge"),
        "model": Column(
            "Mixed model, e.g. r2star_harmonized ~ time + arm + time:arm + age0 + C(sex) + "
            "C(site) + (1 + time | participant)"
        ),
        "note": Column(
            "Arms left out, a random slope dropped, or a fit that did not converge (empty "
            "otherwise)"
        ),
        "random_effects": Column(
            "Random effects per participant of the fitted model",
            levels={
                "intercept + slope": "random intercept and random slope on time",
                "intercept": "random intercept only (the random-slope fit failed: fallback)",
            },
        ),
        "fallback": _bool(
            "Whether the random slope was dropped because its fit failed (CIs too narrow if "
            "yearly changes vary between participants)",
            "random intercept only",
            "random intercept and slope",
        ),
        "scanner_terms": _count(
            "Scanner epochs after the first at a site modelled as session-level offsets (0: no "
            "scanner change during follow-up)"
        ),
    },
    "longitudinal_sessions": {
        "session": Column("Session label, ses-<label> (n/a for data without sessions)"),
        "time_years": Column("Years since the participant's baseline session", "year", decimals=3),
        "age": Column(
            "Age at the session: participants.tsv age (at baseline) + time_years",
            "year",
            decimals=2,
        ),
        "edss": Column(
            "EDSS at the session, from sub-<label>_sessions.tsv (at baseline participants.tsv's "
            "when the sessions file has none)",
            decimals=1,
        ),
        "r2star_site_adjusted": _r2(
            "r2star_median with the site's multiplicative offset removed (ComBat's location, "
            "fitted on the baseline controls; not its scale): what the longitudinal models fit"
        ),
        "time_source": Column(
            "How time_years was found",
            levels={
                "acq_time": "acq_time of sub-<label>_sessions.tsv (every session has one)",
                "age": "age of sub-<label>_sessions.tsv (every session has one, no acq_time)",
                "baseline": "the participant's only timed session (time 0)",
            },
        ),
        "scanner": Column(
            "Scanner of the session: scanner column of sub-<label>_sessions.tsv, else the "
            "first echo sidecar's DeviceSerialNumber/SoftwareVersions (n/a: unknown, counted as "
            "the site's usual scanner)"
        ),
    },
}
