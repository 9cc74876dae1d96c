"""The determinants tables: the multivariable models as an outcomes x predictors grid with
the stepwise selection, which cells are significant, and the predictors' correlations
and VIF (from ``group/determinants.tsv``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..cohort.determinants import PRIMARY_MODEL, UNITS, VIF_LIMIT
from ..cohort.stats import ALPHA
from .clinical import PREDICTOR_LABELS
from .formats import fmt_ci, fmt_number, p_is
from .style import pretty_region


def _label(predictor: str) -> str:
    """A predictor's readable name (:data:`~ironmap.report.clinical.PREDICTOR_LABELS`)."""
    return PREDICTOR_LABELS.get(predictor, str(predictor).replace("_", " "))


def _unit_head(determinants: pd.DataFrame, predictor: str) -> str:
    """``per 10 years``, ``per SD (0.0061)``: the unit of the predictor's ``beta_unit``
    (``determinants.tsv``'s ``unit`` and ``unit_scale``; the SD's range if it differs between
    models); ``per <transform>`` for a table without them."""
    rows = determinants[determinants["predictor"] == predictor]
    if "beta_unit" not in determinants:
        return f"per {rows['transform'].iloc[0]}" if len(rows) else ""
    unit = UNITS.get(predictor, ("", None))
    if unit[1] is not None:
        return f"per {unit[0]}"
    scales = sorted({f"{v:#.2g}" for v in rows["unit_scale"].dropna()}, key=float)
    if not scales:
        return f"per {unit[0]}"
    text = scales[0] if len(scales) == 1 else f"{scales[0]}-{scales[-1]}"
    return f"per {unit[0]} ({text})"


def determinants_heads(determinants: pd.DataFrame) -> dict[str, str]:
    """Predictor -> its :func:`determinants_table` column: readable name, then the unit."""
    names = dict.fromkeys(determinants["predictor"])
    return {p: f"{_label(p)}\n{_unit_head(determinants, p)}" for p in names}


def determinants_table(determinants: pd.DataFrame) -> pd.DataFrame:
    """Multivariable models as an outcomes x predictors grid, with the stepwise selection.

    Cells: ``beta [95 % CI]`` in 1/s per the clinically meaningful unit in the column's head
    (``beta_unit`` of ``determinants.tsv``: per 10 years, per EDSS point, per doubling of
    1 mL + lesion volume, per SD), then the standardised beta, ``p_FDR`` and the VIF (``*``
    after it: above :data:`~ironmap.cohort.determinants.VIF_LIMIT`, not identifiable in
    practice); the last columns give ``n``, the predictors stepwise selection kept with their
    bootstrap inclusion frequency (exploratory) and the rows' ``note``. A region whose primary
    model is collinear has the pre-specified reduced model (duration + EDSS) in the row under it.
    """
    multi = determinants[determinants["model"] == PRIMARY_MODEL]
    stepwise = determinants[determinants["model"] == "stepwise"]
    reduced = determinants[determinants["model"] == "reduced"]
    if multi.empty and stepwise.empty:
        return pd.DataFrame()
    predictors = list(dict.fromkeys(multi["predictor"]))
    heads = determinants_heads(determinants)
    unit = "_unit" if "beta_unit" in determinants else ""
    rows = []
    for region in dict.fromkeys([*multi["region"], *stepwise["region"]]):
        for model, frame in ((PRIMARY_MODEL, multi), ("reduced", reduced)):
            part = frame[frame["region"] == region].set_index("predictor")
            if model == "reduced" and part.empty:
                continue
            name = pretty_region(region)
            row = {"outcome": name if model == PRIMARY_MODEL else f"{name}, reduced model"}
            for p in predictors:
                head = heads[p]
                if p not in part.index:
                    row[head] = ""
                    continue
                r = part.loc[p]
                vif = "" if pd.isna(r["vif"]) else f", VIF {r['vif']:.1f}"
                row[head] = (
                    fmt_ci(r[f"beta{unit}"], r[f"ci_low{unit}"], r[f"ci_high{unit}"])
                    + f"\nstd. beta {fmt_number(r['std_beta'])}, {p_is('p_FDR', r['p_fdr'])}\n"
                    + vif.removeprefix(", ")
                    + ("*" if r["vif"] > VIF_LIMIT else "")
                )
            n = part["n"].max() if len(part) else np.nan
            if model == PRIMARY_MODEL and pd.isna(n):
                n = stepwise.loc[stepwise["region"] == region, "n"].max()
            row["n"] = "" if pd.isna(n) else str(int(n))
            chosen = stepwise[stepwise["region"] == region] if model == PRIMARY_MODEL else []
            row["stepwise (bootstrap inclusion)"] = (
                "\n".join(
                    f"{_label(p)} ({f:.0%})" if pd.notna(f) else _label(p)
                    for p, f in zip(
                        chosen["predictor"],
                        chosen.get("inclusion_frequency", pd.Series(np.nan, index=chosen.index)),
                        strict=True,
                    )
                )
                or ("none" if len(chosen) == 0 and len(part) else "")
                if model == PRIMARY_MODEL
                else ""
            )
            high = [p for p in part.index if part.at[p, "vif"] > VIF_LIMIT]
            if model == "reduced":
                row["note"] = "pre-specified reduced model (duration + EDSS, same covariates)"
            elif high:
                later = (reduced["region"] == region).any()
                row["note"] = (
                    f"not identifiable in practice (VIF > {VIF_LIMIT:g}): "
                    + ", ".join(map(_label, high))
                    + ("; reduced model in the next row" if later else "")
                )
            else:
                row["note"] = ""
            rows.append(row)
    return pd.DataFrame(rows)


def determinants_significant(determinants: pd.DataFrame) -> pd.DataFrame:
    """Which cells of :func:`determinants_table` to mark significant (bold), same shape.

    Only the pre-specified primary model's cells, at ``p_FDR < 0.05``: the reduced,
    univariable and stepwise rows are never marked.
    """
    table = determinants_table(determinants)
    flags = pd.DataFrame(False, index=table.index, columns=table.columns)
    multi = determinants[determinants["model"] == PRIMARY_MODEL]
    names = {pretty_region(r): r for r in multi["region"]}
    heads = determinants_heads(determinants)
    for i, outcome in enumerate(table.get("outcome", [])):
        if outcome not in names:
            continue
        part = multi[multi["region"] == names[outcome]]
        for p, q in zip(part["predictor"], part["p_fdr"], strict=True):
            if heads.get(p) in table.columns:
                flags.at[i, heads[p]] = bool(q < ALPHA)
    return flags


def correlation_table(determinants: pd.DataFrame) -> pd.DataFrame:
    """The predictors' correlations (with age) of the first primary model, as a matrix.

    Rows and columns: the predictors of that region's primary model, then age; values:
    ``corr_<name>`` of ``determinants.tsv`` (Pearson r over the model's participants), two
    decimals; the last column gives each predictor's VIF. Empty without a primary model.
    """
    multi = determinants[determinants["model"] == PRIMARY_MODEL]
    if multi.empty:
        return pd.DataFrame()
    region = multi["region"].iloc[0]
    part = multi[multi["region"] == region]
    names = [*part["predictor"], "age"]
    rows = []
    for _, r in part.iterrows():
        row = {f"{pretty_region(region)}: r": _label(r["predictor"])}
        row.update({_label(q): fmt_number(r[f"corr_{q}"]) for q in names if f"corr_{q}" in r})
        row["VIF"] = f"{r['vif']:.1f}" + ("*" if r["vif"] > VIF_LIMIT else "")
        rows.append(row)
    return pd.DataFrame(rows)
