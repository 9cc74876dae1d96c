"""Clinical and MRI determinants of R2* in MS (the 2014 study's regression analysis).

Participants: clinically definite MS (RRMS, SPMS, PPMS, or MS without a phenotype); CIS is not
pooled in. Outcomes:

- deep grey matter and NAWM: harmonised, age-corrected R2* (1/s, :mod:`.age`);
- ``lesions``: lesion R2* (1/s), with age and site as covariates (no control model exists for
  lesions), from participants whose lesion mask has at least ``MIN_LESION_VOXELS`` voxels;
- ``lesions_nawm``: lesion minus the same participant's NAWM R2* (1/s), same covariates.

Every model is adjusted for age, sex and site (:data:`COVARIATES`; site as fixed effects):
disease duration and EDSS rise with age, and patients may be concentrated at some sites, so a
model without them finds "determinants" in cohorts where nothing affects R2*
(benchmarks/determinants_calibration.py). Predictors, as docs/conventions.md names them, with
the scale their ``beta`` refers to (``transform`` column): ``disease_duration`` (years),
``edss`` (points),
``lesion_volume_ml`` as ``log(1 + mL)`` (lesion volumes are right-skewed), ``nbv`` (fraction
of ICV) and ``cortical_gm_ml`` as percent of ICV (head-size normalised); ``beta_unit`` and
its CI give beta per a clinically meaningful unit (:data:`UNITS`: per 10 years, per EDSS point,
per doubling of 1 mL + lesion volume, per SD of NBV and of cortical GM). A predictor missing
for everyone is left out with a warning; a participant missing any other predictor is left out
of all of that region's models, so that they share one set of participants.
Deep grey matter and NAWM also take ``n_prl`` (paramagnetic rim lesion candidates of the
participant's ``_lesions.tsv``, a count; beta per PRL) when the cohort has it (lesion tables
with chi, :data:`OPTIONAL_PREDICTORS`); without it, or missing for everyone, it is left out
silently and the models are those of a cohort without chi.

Model sets (statsmodels OLS):

- ``multivariable``: the pre-specified primary model, all predictors together (only with
  >= 10 participants per predictor), with standardised betas, VIFs (in the whole design,
  covariates included) and each predictor's correlations with the others and with age
  (``corr_<name>`` columns). A predictor whose VIF exceeds :data:`VIF_LIMIT` is not
  identifiable in practice (measured in benchmarks/determinants_calibration.py): its ``note``
  says so, and the region gets the ``reduced`` model beside it;
- ``reduced``: the pre-specified reduced model, disease duration + EDSS with the same
  covariates (deep grey matter and NAWM only), fitted where the primary model is collinear;
- ``univariable``: one predictor at a time (>= 10 participants), same covariates;
- ``stepwise``: forward entry at p < 0.05 and backward removal at p > 0.10 as in SPSS
  (2014). Its p-values ignore the selection, so the rows are marked ``exploratory`` and carry
  the ``inclusion_frequency`` of each predictor over bootstrap resamples instead of an FDR.

FDR families: Benjamini-Hochberg over all regions x predictors of the ``multivariable`` set
(the primary family, :data:`PRIMARY_MODEL`: the only rows the report marks significant), and
separately of the ``univariable`` and of the ``reduced`` sets.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.stats.outliers_influence import variance_inflation_factor

from ..errors import IronmapWarning
from .stats import ALPHA, fcr_intervals, fdr
from .stepwise import ENTER as ENTER
from .stepwise import REMOVE as REMOVE
from .stepwise import _inclusion, ols_pvalues, stepwise

__all__ = [
    "COVARIATES",
    "DETERMINANT_COLUMNS",
    "FCR_COLUMNS",
    "MIN_LESION_VOXELS",
    "OPTIONAL_PREDICTORS",
    "PREDICTORS",
    "PRIMARY_MODEL",
    "REDUCED",
    "TRANSFORMS",
    "UNITS",
    "UNIT_COLUMNS",
    "VIF_LIMIT",
    "correlation_columns",
    "determinants",
    "ols_pvalues",
    "predictor_values",
    "stepwise",
    "unit_columns",
]

PREDICTORS = ("disease_duration", "edss", "lesion_volume_ml", "nbv", "cortical_gm_ml")
#: Predictors of deep grey matter and NAWM only when the cohort has them (``n_prl``: lesion
#: tables with chi): absent or missing for everyone, they are left out without a warning.
OPTIONAL_PREDICTORS = ("n_prl",)
LESION_PREDICTORS = ("disease_duration", "lesion_volume_ml")
#: Covariates of every model (``site``: fixed effects).
COVARIATES = ("age", "sex", "site")
#: The pre-specified reduced model, fitted beside a collinear primary model.
REDUCED = ("disease_duration", "edss")
#: The pre-specified primary model set: the only rows marked significant in the report.
PRIMARY_MODEL = "multivariable"
#: VIF above which a coefficient of the primary model is not identifiable in practice,
#: measured over 200 seeded cohorts (benchmarks/determinants_calibration.py: ~100 patients,
#: the seed's slopes): from VIF 7.5 a planted slope is detected in <= 10 % of cohorts (5.5 %
#: at VIF 7.5-10, vs 14 % at 5-7.5 and 34 % below 2.5) and its estimate has the wrong sign in
#: >= 20 % (33 %); CI coverage stays nominal at every VIF.
VIF_LIMIT = 7.5
LESION_OUTCOMES = ("lesions", "lesions_nawm")
#: predictor -> what its beta is per.
TRANSFORMS = {
    "disease_duration": "years",
    "edss": "EDSS points",
    "lesion_volume_ml": "log(1 + lesion_volume_ml)",
    "nbv": "brain / ICV",
    "cortical_gm_ml": "100 * cortical_gm_ml / icv_ml (% of ICV)",
    "n_prl": "PRL candidates (count)",
}
#: predictor -> (unit, scale): the clinically meaningful unit the ``*_unit`` columns of
#: ``determinants.tsv`` are per, as a multiple of the :data:`TRANSFORMS` scale; scale ``None``:
#: one SD of the predictor over the model's participants (the SD ``std_beta`` uses). Lesion
#: volume: log(1 + mL) x ln 2, a doubling of 1 mL + volume (about a doubling of the volume
#: for volumes well above 1 mL).
UNITS: dict[str, tuple[str, float | None]] = {
    "disease_duration": ("10 years", 10.0),
    "edss": ("EDSS point", 1.0),
    "lesion_volume_ml": ("doubling of (1 mL + volume)", float(np.log(2))),
    "nbv": ("SD", None),
    "cortical_gm_ml": ("SD", None),
    "n_prl": ("PRL", 1.0),
}
#: Columns :func:`unit_columns` adds after the others: beta and its CI per :data:`UNITS`.
UNIT_COLUMNS = ["unit", "unit_scale", "beta_unit", "ci_low_unit", "ci_high_unit"]
DETERMINANT_COLUMNS = [
    "region",
    "model",
    "predictor",
    "beta",
    "std_beta",
    "ci_low",
    "ci_high",
    "p",
    "p_fdr",
    "n",
    "vif",
    "transform",
    "covariates",
    "exploratory",
    "inclusion_frequency",
    "note",
]
#: False-coverage-rate adjusted CIs (:func:`fcr_columns`), after the ``corr_*`` columns.
FCR_COLUMNS = ["ci_low_fcr", "ci_high_fcr", "std_ci_low_fcr", "std_ci_high_fcr", "fcr_level"]


def correlation_columns(predictors) -> list[str]:
    """``corr_<name>`` columns of the primary rows: the predictors, then age."""
    return [f"corr_{p}" for p in (*predictors, "age")]


PER_PREDICTOR = 10
MIN_LESION_VOXELS = 20
N_BOOTSTRAP = 100


def predictor_values(subjects: pd.DataFrame) -> pd.DataFrame:
    """The predictors on the scale of :data:`TRANSFORMS` (one column per predictor)."""
    out = pd.DataFrame(index=subjects.index)
    out["disease_duration"] = subjects["disease_duration"]
    out["edss"] = subjects["edss"]
    out["lesion_volume_ml"] = np.log1p(subjects["lesion_volume_ml"].clip(lower=0))
    out["nbv"] = subjects["nbv"]
    icv = subjects["icv_ml"].where(subjects["icv_ml"] > 0)
    out["cortical_gm_ml"] = 100.0 * subjects["cortical_gm_ml"] / icv
    out["n_prl"] = subjects.get("n_prl", np.nan)
    return out


def _covariates(sub: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Intercept, age (years), sex and site dummies (first level the reference)."""
    names = list(COVARIATES)
    dummies = pd.get_dummies(
        sub[["sex", "site"]].astype(str), drop_first=True, dtype=float
    ).to_numpy(float)
    return np.column_stack([np.ones(len(sub)), sub["age"].to_numpy(float), dummies]), names


def _fit(y, base, x):
    return sm.OLS(y, np.column_stack([base, x]) if x.size else base).fit()


def _rows(region, model, sub, base, covariates, predictors) -> list[dict]:
    y = sub["y"].to_numpy(float)
    x = sub[predictors].to_numpy(float)
    result = _fit(y, base, x)
    first = base.shape[1]
    ci = result.conf_int()
    vifs = {}
    if model in (PRIMARY_MODEL, "reduced"):
        # in the whole design: collinearity with age and site widens a CI as much
        design = np.column_stack([base, x])
        vifs = {p: variance_inflation_factor(design, first + i) for i, p in enumerate(predictors)}
    sd_y = np.std(y, ddof=1)
    sd_y = sd_y if sd_y > 0 else np.nan  # a constant outcome has no standardised beta
    return [
        {
            "region": region,
            "model": model,
            "predictor": p,
            "beta": float(result.params[first + i]),
            "std_beta": float(result.params[first + i] * np.std(x[:, i], ddof=1) / sd_y),
            "ci_low": float(ci[first + i, 0]),
            "ci_high": float(ci[first + i, 1]),
            "p": float(result.pvalues[first + i]),
            "se": float(result.bse[first + i]),  # for fcr_columns, not a column
            "df_resid": float(result.df_resid),
            "n": int(result.nobs),
            "vif": float(vifs.get(p, np.nan)),
            "transform": TRANSFORMS[p],
            "unit_scale": UNITS[p][1] or float(np.std(x[:, i], ddof=1)),
            "covariates": ", ".join(covariates),
            "exploratory": model == "stepwise",
            "note": "",
        }
        for i, p in enumerate(predictors)
    ]


def _independent(
    sub: pd.DataFrame, predictors: list[str], region: str, base: np.ndarray
) -> list[str]:
    """Drop predictors that are linear combinations of the covariates and earlier predictors."""
    kept: list[str] = []
    for p in predictors:
        trial = np.column_stack([base[:, 1:], sub[[*kept, p]].to_numpy(float)])
        scaled = (trial - trial.mean(0)) / np.where(trial.std(0) > 0, trial.std(0), 1.0)
        scaled = np.column_stack([np.ones(len(sub)), scaled])
        if np.linalg.matrix_rank(scaled, tol=1e-8 * len(sub)) == scaled.shape[1]:
            kept.append(p)
        else:
            warnings.warn(
                f"{region}: {p} is collinear with {', '.join([*COVARIATES, *kept])}; left out "
                "of its models",
                IronmapWarning,
                stacklevel=3,
            )
    return kept


def _usable(sub: pd.DataFrame, candidates: tuple[str, ...], region: str) -> list[str]:
    usable = []
    for p in candidates:
        if p in OPTIONAL_PREDICTORS and (p not in sub or sub[p].notna().sum() == 0):
            continue  # the cohort has no such measure (e.g. no lesion chi: no PRL count)
        if sub[p].notna().sum() == 0:
            warnings.warn(
                f"{region}: predictor {p} is missing for every participant; left out",
                IronmapWarning,
                stacklevel=3,
            )
        elif sub[p].std(ddof=1) > 0:
            usable.append(p)
    return usable


def _primary(region, sub, base, covariates, usable) -> list[dict]:
    """The primary model's rows (notes, correlations), and the reduced model where collinear."""
    rows = _rows(region, PRIMARY_MODEL, sub, base, covariates, usable)
    names = [*usable, "age"]
    corr = np.corrcoef(sub[names].to_numpy(float), rowvar=False)
    collinear = []
    for i, row in enumerate(rows):
        row.update({f"corr_{q}": float(corr[i, j]) for j, q in enumerate(names)})
        if row["vif"] > VIF_LIMIT:
            collinear.append(row["predictor"])
            row["note"] = (
                f"VIF {row['vif']:.1f} > {VIF_LIMIT:g}: not identifiable in practice "
                "(collinear with the other predictors and covariates)"
            )
    reduced = [p for p in REDUCED if p in usable]
    if not collinear or region in LESION_OUTCOMES or not reduced or reduced == usable:
        return rows
    for row in rows:
        if row["note"]:
            row["note"] += "; the reduced model (duration + EDSS) is beside it"
    extra = _rows(region, "reduced", sub, base, covariates, reduced)
    for row in extra:
        row["note"] = (
            "pre-specified reduced model (duration + EDSS): the primary model is collinear "
            f"({', '.join(collinear)} VIF > {VIF_LIMIT:g})"
        )
    return rows + extra


def _region(
    region: str, sub: pd.DataFrame, seed: int, thin: list[str], n_bootstrap: int
) -> list[dict]:
    candidates = (
        LESION_PREDICTORS if region in LESION_OUTCOMES else (*PREDICTORS, *OPTIONAL_PREDICTORS)
    )
    usable = _usable(sub, candidates, region)
    sub = sub.dropna(subset=["y", *COVARIATES, *usable])
    if len(sub) < PER_PREDICTOR:
        return []
    base, covariates = _covariates(sub)
    usable = _independent(sub, [p for p in usable if sub[p].std(ddof=1) > 0], region, base)
    if not usable:
        return []
    rows: list[dict] = []
    if len(sub) >= PER_PREDICTOR * len(usable):
        rows += _primary(region, sub, base, covariates, usable)
    else:
        thin.append(f"{region} ({len(sub)} for {len(usable)})")
    for p in usable:
        rows += _rows(region, "univariable", sub, base, covariates, [p])
    y, x = sub["y"].to_numpy(float), sub[usable].to_numpy(float)
    chosen = [usable[i] for i in stepwise(y, base, x)]
    frequency = dict(zip(usable, _inclusion(y, base, x, seed, n_bootstrap), strict=True))
    for row in _rows(region, "stepwise", sub, base, covariates, chosen):
        row["inclusion_frequency"] = frequency[row["predictor"]]
        row["note"] = "exploratory: p ignores the selection"
        rows.append(row)
    return rows


def determinants(
    data: pd.DataFrame, *, seed: int = 0, n_bootstrap: int = N_BOOTSTRAP
) -> pd.DataFrame:
    """docs/conventions.md ``determinants.tsv`` rows (plus columns) from MS participants.

    Columns: :data:`DETERMINANT_COLUMNS`, then ``corr_<name>`` (primary rows: the Pearson
    correlation of the row's predictor with each predictor of the region's model and with age,
    over the model's participants; empty elsewhere) for the predictors any region used, then
    :data:`UNIT_COLUMNS` (:func:`unit_columns`: beta per a clinically meaningful unit).

    Parameters
    ----------
    data : pandas.DataFrame
        One row per MS participant x region, with ``region``, ``y`` (the outcome, 1/s),
        ``sex``, ``age``, ``site`` and the predictors on the scale of :data:`TRANSFORMS`
        (see :func:`predictor_values`).
    seed : int
        Seed of the stepwise bootstrap.
    n_bootstrap : int
        Resamples of the stepwise bootstrap (0: none, ``inclusion_frequency`` NaN).
    """
    rows: list[dict] = []
    thin: list[str] = []
    for region, sub in data.groupby("region", sort=False):
        rows += _region(region, sub, seed, thin, n_bootstrap)
    if thin:
        warnings.warn(
            f"fewer than {PER_PREDICTOR} patients per predictor, no multivariable model: "
            + ", ".join(thin),
            IronmapWarning,
            stacklevel=2,
        )
    names = (*PREDICTORS, *OPTIONAL_PREDICTORS)
    corr = [c for c in correlation_columns(names) if any(c in r for r in rows)]
    table = pd.DataFrame(rows).reindex(columns=[*DETERMINANT_COLUMNS, *corr])
    table["p_fdr"] = np.nan
    for model in (PRIMARY_MODEL, "univariable", "reduced"):
        idx = table.index[table["model"] == model]
        table.loc[idx, "p_fdr"] = fdr(table.loc[idx, "p"])
    table = unit_columns(table, pd.DataFrame(rows).get("unit_scale"))
    table = fcr_columns(table, pd.DataFrame(rows).reindex(columns=["se", "df_resid"]))
    return table


def unit_columns(table: pd.DataFrame, scale: pd.Series | None) -> pd.DataFrame:
    """``table`` with :data:`UNIT_COLUMNS` appended: beta and its CI per :data:`UNITS`.

    Parameters
    ----------
    table : pandas.DataFrame, shape (m, k)
        :func:`determinants` rows (``predictor``, ``beta``, ``ci_low``, ``ci_high``).
    scale : pandas.Series, shape (m,), or None
        The unit in the predictor's :data:`TRANSFORMS` scale, row by row (``unit_scale``).

    Returns
    -------
    pandas.DataFrame, shape (m, k + 5)
        ``unit`` (text), ``unit_scale``, ``beta_unit = beta x unit_scale`` and the CI bounds
        likewise (a positive scale keeps their order).
    """
    scale = pd.Series(np.nan if scale is None else scale, index=table.index, dtype=float)
    return table.assign(
        unit=table["predictor"].map(lambda p: UNITS[p][0] if p in UNITS else ""),
        unit_scale=scale,
        beta_unit=table["beta"] * scale,
        ci_low_unit=table["ci_low"] * scale,
        ci_high_unit=table["ci_high"] * scale,
    )


def fcr_columns(table: pd.DataFrame, fits: pd.DataFrame) -> pd.DataFrame:
    """``table`` plus :data:`FCR_COLUMNS`: CIs adjusted for the selection by ``p_fdr``.

    Within each family ``p_fdr`` is computed over (the primary, univariable and reduced rows,
    apart), :func:`~ironmap.cohort.stats.fcr_intervals` at q = :data:`ALPHA`: with R of the m
    rows at ``p_fdr`` < 0.05, CIs of beta at level ``1 - R q / m`` (``fcr_level``), which
    exclude 0 exactly for those R rows; ``std_ci_*_fcr``: the same CI on the scale of
    ``std_beta`` (times ``std_beta / beta``). Stepwise rows: NaN.

    Parameters
    ----------
    table : pandas.DataFrame
        The determinants with ``model, beta, std_beta, p``, index 0..n-1.
    fits : pandas.DataFrame
        ``se`` and ``df_resid`` of each row's coefficient (same index).
    """
    out = table.assign(**{c: np.nan for c in FCR_COLUMNS})
    for model in (PRIMARY_MODEL, "univariable", "reduced"):
        idx = out.index[out["model"] == model]
        low, high, level = fcr_intervals(
            out.loc[idx, "beta"],
            fits.loc[idx, "se"],
            fits.loc[idx, "df_resid"],
            out.loc[idx, "p"],
            q=ALPHA,
        )
        scale = (out.loc[idx, "std_beta"] / out.loc[idx, "beta"].replace(0, np.nan)).to_numpy()
        out.loc[idx, "ci_low_fcr"], out.loc[idx, "ci_high_fcr"] = low, high
        out.loc[idx, "std_ci_low_fcr"] = np.fmin(low * scale, high * scale)
        out.loc[idx, "std_ci_high_fcr"] = np.fmax(low * scale, high * scale)
        out.loc[idx, "fcr_level"] = level
    return out
