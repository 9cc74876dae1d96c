"""The report's section on lesions one by one (``group/lesion_models.tsv``).

A lead paragraph on what was modelled and on whom, the table of the mixed models of
:func:`ironmap.cohort.lesions.lesion_models` (estimate [95 % CI], p, lesions and participants
per outcome and term) and one figure: each lesion's R2* relative to the participant's NAWM
against its volume (log scale), coloured by location, with the fitted lines, beside the
distribution of the rim-core contrast. Left out (``''``) when no participant has a lesion table.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ..cohort.lesions import MIN_LOCATION_LESIONS, lesion_outcomes
from .analyses import not_run
from .style import PAGE_WIDTH_IN, new_figure
from .tables import fmt_ci, fmt_p

__all__ = ["LOCATION_STYLE", "lesion_figure", "lesion_model_table", "lesion_section"]

_SIGNIFICANT = 0.05

#: Colour, marker and label of each ``location``. Not the group colours (every lesion here is
#: from MS): Okabe-Ito sky blue against dark grey, which differ in lightness too (greyscale,
#: colour vision deficiency), and a marker each as a second cue.
LOCATION_STYLE = {
    "periventricular": ("#56B4E9", "o", "periventricular"),
    "deep_white_matter": ("#444444", "^", "deep white matter"),
    "n/a": ("#AAAAAA", "s", "location unknown"),
}

_OUTCOMES = {
    "lesion_r2star_pct": ("lesion R2* relative to NAWM (%)", "%"),
    "rim_core_r2star": ("rim - core R2* (1/s)", "1/s"),
}
_TERMS = {
    "Intercept": "intercept",
    "location[periventricular]": "periventricular vs deep white matter",
    "log2_volume": "per doubling of lesion volume",
    "disease_duration": "per year of disease duration",
    "age": "per year of age",
}


def _term_label(term: str) -> str:
    """Display name of a model term: ``C(site)[T.b]`` -> ``site b (vs reference)``."""
    if term in _TERMS:
        return _TERMS[term]
    for name in ("sex", "site"):
        prefix = f"C({name})[T."
        if term.startswith(prefix) and term.endswith("]"):
            return f"{name} {term[len(prefix) : -1]} (vs reference)"
    return term.replace("_", " ")


def _p(p: float) -> str:
    return fmt_p(p)


def lesion_model_table(models: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Display strings of ``lesion_models.tsv``: per outcome and term, the estimate [95 % CI]
    (2 decimals, in the outcome's units), p, and the lesions and participants modelled.

    Returns the table and a same-shaped frame of booleans (p < 0.05, and the fit converged)
    for the bold cells. An
    outcome without a model (too few lesions) has one row with its counts and no estimate.
    """
    shown, flags = [], []
    for outcome, part in models.groupby("outcome", sort=False):
        name = _OUTCOMES.get(outcome, (outcome, ""))[0]
        for i, (_, row) in enumerate(part.iterrows()):
            fitted = pd.notna(row["estimate"])
            term = str(row["term"]) if pd.notna(row["term"]) else ""
            shown.append(
                {
                    "outcome": name if i == 0 else "",
                    "term": _term_label(term) if term else "not fitted",
                    "estimate [95 % CI]": (
                        fmt_ci(row["estimate"], row["ci_low"], row["ci_high"])
                        if fitted
                        else ("not estimated (see the notes)" if term else "")
                    ),
                    "p": _p(float(row["p"])) if fitted and pd.notna(row["p"]) else "",
                    "n lesions": f"{int(row['n_lesions'])}",
                    "n participants": f"{int(row['n_participants'])}",
                }
            )
            converged = str(row.get("converged", True)) != "False"
            significant = bool(
                fitted and converged and pd.notna(row["p"]) and row["p"] < _SIGNIFICANT
            )
            flags.append({"estimate [95 % CI]": significant, "p": significant})
    columns = ["outcome", "term", "estimate [95 % CI]", "p", "n lesions", "n participants"]
    return pd.DataFrame(shown, columns=columns), pd.DataFrame(flags)


def _locations(data: pd.DataFrame) -> pd.Series:
    """``location`` of each row, ``n/a`` where unknown (or no such column)."""
    if "location" not in data:
        return pd.Series("n/a", index=data.index)
    return data["location"].astype(object).where(data["location"].notna(), "n/a").astype(str)


def _fitted_lines(ax, data: pd.DataFrame, models: pd.DataFrame) -> None:
    """The model's fixed-effect prediction against volume at the median disease duration, one
    line per location level of the model (deep white matter only without a location term)."""
    pct = models[(models["outcome"] == "lesion_r2star_pct") & models["estimate"].notna()]
    beta = dict(zip(pct["term"], pct["estimate"], strict=True))
    if not {"Intercept", "log2_volume", "disease_duration"} <= set(beta) or data.empty:
        return
    centre = float(np.log2(data["volume_ml"].iloc[0]) - data["log2_volume"].iloc[0])
    volume = np.geomspace(data["volume_ml"].min(), data["volume_ml"].max(), 50)
    base = (
        beta["Intercept"]
        + beta["log2_volume"] * (np.log2(volume) - centre)
        + beta["disease_duration"] * float(data["disease_duration"].median())
    )
    levels = {"deep_white_matter": 0.0}
    levels.update(
        {t[len("location[") : -1]: b for t, b in beta.items() if t.startswith("location[")}
    )
    for level, shift in levels.items():
        colour, _, label = LOCATION_STYLE.get(level, LOCATION_STYLE["n/a"])
        ax.plot(volume, base + shift, color=colour, lw=1.5, label=f"fitted, {label}")


def lesion_figure(data: pd.DataFrame, models: pd.DataFrame):
    """Left: lesion R2* relative to NAWM (%) against lesion volume (mL, log scale), a point per
    lesion coloured by location, with the fitted lines of the model; right: histogram of the
    rim-core contrast (1/s) of the lesions with a core, stacked by location.

    ``data`` are the rows of :func:`ironmap.cohort.lesions.lesion_outcomes`. Returns a sentence
    when there is nothing to draw.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    data = data[np.isfinite(data["lesion_r2star_pct"])] if len(data) else data
    if data.empty:
        return "No lesion rows to draw (lesion tables of MS participants with a disease duration)."
    location = _locations(data)
    levels = [k for k in LOCATION_STYLE if (location == k).any()]
    fig, axes = new_figure(
        2, 1, height=2.7, width=PAGE_WIDTH_IN, gridspec_kw={"width_ratios": [1.7, 1]}
    )
    left, right = axes
    for level in levels:
        colour, marker, label = LOCATION_STYLE[level]
        part = data[location == level]
        left.scatter(
            part["volume_ml"],
            part["lesion_r2star_pct"],
            s=7,
            color=colour,
            marker=marker,
            alpha=0.8,
            lw=0,
            label=f"{label} (n = {len(part)})",
        )
    _fitted_lines(left, data, models)
    left.axhline(0.0, color="#888888", lw=0.8, ls=":")
    left.set_xscale("log")
    # plain numbers (0.2, 0.5, 1, 2): no superscript exponents under 7 pt, no crowded minors
    left.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    left.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    left.xaxis.set_minor_formatter(NullFormatter())
    left.set_xlabel("lesion volume (mL, log scale)")
    left.set_ylabel("lesion R2* relative to NAWM (%)")
    left.set_title("Lesion R2* against volume")
    contrast = data["rim_core_r2star"].to_numpy(float)
    cored = np.isfinite(contrast)
    if cored.any():
        edges = np.histogram_bin_edges(contrast[cored], bins=min(30, max(5, cored.sum() // 4)))
        stacks = [contrast[cored & (location == k).to_numpy()] for k in levels]
        right.hist(
            stacks,
            bins=edges,
            stacked=True,
            color=[LOCATION_STYLE[k][0] for k in levels],
            label=[LOCATION_STYLE[k][2] for k in levels],
            edgecolor="white",
            lw=0.4,
        )
        right.axvline(0.0, color="#888888", lw=0.8, ls=":", zorder=3)
        right.yaxis.set_major_locator(MaxNLocator(integer=True))
        right.set_xlabel("rim - core R2* (1/s)")
        right.set_ylabel("lesions")
        right.set_title(f"Rim-core contrast ({int(cored.sum())} lesions with a core)")
    else:
        right.axis("off")
        right.text(0.5, 0.5, "no lesion has a core", ha="center", va="center")
    handles, names = left.get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        loc="outside lower center",
        ncols=len(names),
        frameon=False,
        markerscale=1.5,
    )
    return fig


def _lead(data: pd.DataFrame, models: pd.DataFrame) -> str:
    """What was modelled, and on how many lesions of how many participants."""
    if len(data):
        location = _locations(data)
        counts = ", ".join(
            f"{int((location == k).sum())} {LOCATION_STYLE[k][2]}"
            for k in LOCATION_STYLE
            if (location == k).any()
        )
        q1, median, q3 = np.percentile(data["volume_ml"], [25, 50, 75])
        who = (
            f"{len(data)} lesions of {data['participant_id'].nunique()} MS participants with a "
            f"disease duration ({counts}; median volume {median:.3f} mL, IQR {q1:.3f}-{q3:.3f})"
        )
    else:
        who = f"up to {int(models['n_lesions'].max())} lesions (see the table)"
    return (
        "<p>Every lesion of the lesion masks (26-connected component, baseline session; "
        "sub-&lt;label&gt;_lesions.tsv), modelled one by one with lesions nested in "
        "participants (linear mixed model, random intercept per participant, REML): the "
        "median R2* of the lesion's core (the lesion without its one-voxel rim band, which "
        "mixes lesion with NAWM and holds paramagnetic rims) relative to the participant's "
        "NAWM median, 100 (core / NAWM - 1) in % (lesions with a core), and the rim-core "
        "contrast (rim minus core median R2*, 1/s; high in "
        "paramagnetic rim lesions; lesions with a core), each on log2 lesion volume (per "
        "doubling, centred at the median volume), disease duration (years) and location "
        "(periventricular: within 3 mm of the lateral ventricles, against deep white matter; "
        f"when both have at least {MIN_LOCATION_LESIONS} lesions), adjusted for age, sex and "
        "site. A fit that did not converge (or is singular) shows no estimate; a participant "
        "variance on its boundary (0) is refitted by least squares with participant-clustered "
        f"standard errors. {who}.</p>"
    )


def lesion_section(numbers, result, plotting) -> str:
    """The section's HTML ('' without lesion tables).

    ``numbers`` numbers the tables and figures (the report's ``_Numbers``), ``result`` is the
    :class:`~ironmap.workflows.group.GroupResult` (``lesion_models`` and the lesion rows
    ``lesions``), ``plotting`` the report's matplotlib context.
    """
    models = getattr(result, "lesion_models", pd.DataFrame())
    if models is None or models.empty:
        return not_run(result, "lesion_models")  # why it did not run ('' when not recorded)
    rows = getattr(result, "lesions", pd.DataFrame())
    data = (
        lesion_outcomes(rows, result.subjects)
        if rows is not None and len(rows)
        else pd.DataFrame()
    )
    shown, flags = lesion_model_table(models)
    parts = [
        "<h2>Lesions one by one</h2>",
        _lead(data, models),
        numbers.table(
            shown,
            "Mixed models of lesion R2* (group/lesion_models.tsv): estimate [95 % CI] in the "
            "outcome's units (% of NAWM R2*, or 1/s) per doubling of lesion volume, per year of "
            "disease duration and for periventricular against deep white-matter lesions; "
            "intercept: a deep white-matter lesion of the median volume at disease duration 0 "
            "and the mean age (reference sex and site). p: Wald test, not corrected for "
            "multiple comparisons; bold: p < 0.05 in a converged fit. n: lesions "
            "and participants in the model.",
            cell_class=lambda r, c: "sig" if c in flags.columns and flags.at[r, c] else "",
            left=2,
        ),
    ]
    with plotting():
        parts.append(
            numbers.figure(
                lesion_figure(data, models),
                "Lesions one by one. Left: each lesion's core median R2* relative to its "
                "participant's NAWM median (%) against its volume (log scale), coloured by "
                "location; dotted: NAWM; lines: the mixed model's fixed-effect prediction at the "
                "median disease duration. Right: rim minus core median R2* (1/s) of the lesions "
                "with a core, stacked by location; paramagnetic rim lesions lie to the right.",
                "lesion R2* against volume by location, and the rim-core contrast",
            )
        )
    notes = models.loc[models["note"].fillna("") != "", ["outcome", "note"]].drop_duplicates()
    unconverged = models.loc[models["converged"].astype(str) == "False", "outcome"].unique()
    items = [
        f"<li><b>{html.escape(_OUTCOMES.get(o, (o, ''))[0])}</b>: {html.escape(t)}</li>"
        for o, t in zip(notes["outcome"], notes["note"], strict=True)
    ] + [
        f"<li><b>{html.escape(_OUTCOMES.get(o, (o, ''))[0])}</b>: no usable fit (did not "
        "converge, or a singular fit): no estimate is shown or marked</li>"
        for o in unconverged
    ]
    if items:
        parts.append(
            f"<p class='note'>Notes on the models:</p><ul class='note'>{''.join(items)}</ul>"
        )
    return "".join(parts)
