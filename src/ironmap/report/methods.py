"""The report's Methods paragraphs, written from what was run.

Acquisition and processing come from ``group/participant_qc.tsv`` (the participants' sidecars,
NIfTI headers and provenance options); harmonisation from ``group/harmonization.json``; the age
model per region from ``group/age_model.tsv``; the statistics from the group tables. An option
that differs between participants is stated with the count of each value. References are listed
in the order they are first cited, only those cited.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

import pandas as pd

from ..cohort.age import MIN_CONTROLS_PER_SITE
from ..cohort.compare import MS_LABELS
from ..cohort.determinants import VIF_LIMIT
from ..fitting import SOLVERS
from ..iron import CALIBRATIONS
from ..regions.labels import DEEP_GM
from .protocol import protocol_summary
from .style import labels, pretty_region
from .tables import curve_label

__all__ = ["REFERENCES", "methods_html"]

REFERENCES = {
    "ropele": "Ropele S, Kilsdonk ID, Wattjes MP, et al. Determinants of iron accumulation in "
    "deep grey matter of multiple sclerosis patients. Mult Scler 2014;20:1692-8.",
    "sijbers": "Sijbers J, den Dekker AJ, Scheunders P, Van Dyck D. Maximum-likelihood "
    "estimation of Rician distribution parameters. IEEE Trans Med Imaging 1998;17:357-61.",
    "box": "Box MJ. Bias in nonlinear estimation. J R Stat Soc B 1971;33:171-201.",
    "pei": "Pei M, Nguyen TD, Thimmappa ND, et al. Algorithm for fast monoexponential fitting "
    "based on Auto-Regression on Linear Operations (ARLO) of data. Magn Reson Med "
    "2015;73:843-50.",
    "yablonskiy": "Yablonskiy DA. Quantitation of intrinsic magnetic susceptibility-related "
    "effects in a tissue matrix. Phantom study. Magn Reson Med 1998;39:417-28.",
    "dahnke": "Dahnke H, Schaeffter T. Limits of detection of SPIO at 3.0 T using T2* "
    "relaxometry. Magn Reson Med 2005;53:1202-6.",
    "lancaster2000": "Lancaster JL, Woldorff MG, Parsons LM, et al. Automated Talairach atlas "
    "labels for functional brain mapping. Hum Brain Mapp 2000;10:120-31.",
    "lancaster2007": "Lancaster JL, Tordesillas-Gutierrez D, Martinez M, et al. Bias between MNI "
    "and Talairach coordinates analyzed using the ICBM-152 brain template. Hum Brain Mapp "
    "2007;28:1194-205.",
    "langkammer": "Langkammer C, Krebs N, Goessler W, et al. Quantitative MR imaging of brain "
    "iron: a postmortem validation study. Radiology 2010;257:455-62.",
    "johnson": "Johnson WE, Li C, Rabinovic A. Adjusting batch effects in microarray expression "
    "data using empirical Bayes methods. Biostatistics 2007;8:118-27.",
    "fortin": "Fortin JP, Cullen N, Sheline YI, et al. Harmonization of cortical thickness "
    "measurements across scanners and sites. NeuroImage 2018;167:104-20.",
    "hallgren": "Hallgren B, Sourander P. The effect of age on the non-haemin iron in the "
    "human brain. J Neurochem 1958;3:41-51.",
    "pomponio": "Pomponio R, Erus G, Habes M, et al. Harmonization of large MRI datasets for the "
    "analysis of brain imaging patterns throughout the lifespan. NeuroImage 2020;208:116450.",
    "long": "Long JS, Ervin LH. Using heteroscedasticity consistent standard errors in the "
    "linear regression model. Am Stat 2000;54:217-24.",
    "bellmccaffrey": "Bell RM, McCaffrey DF. Bias reduction in standard errors for linear "
    "regression with multi-stage samples. Survey Methodology 2002;28:169-81.",
    "bh": "Benjamini Y, Hochberg Y. Controlling the false discovery rate: a practical and "
    "powerful approach to multiple testing. J R Stat Soc B 1995;57:289-300.",
}
#: Fit method -> references of its estimator (methods without one cite none).
FIT_REFERENCES = {"auto": ("sijbers", "box"), "arlo": ("pei",)}
_CITE = {
    "ropele": "Ropele et al. 2014",
    "sijbers": "Sijbers et al. 1998",
    "box": "Box 1971",
    "pei": "Pei et al. 2015",
    "yablonskiy": "Yablonskiy 1998",
    "dahnke": "Dahnke and Schaeffter 2005",
    "lancaster2000": "Lancaster et al. 2000",
    "lancaster2007": "Lancaster et al. 2007",
    "langkammer": "Langkammer et al. 2010",
    "johnson": "Johnson et al. 2007",
    "fortin": "Fortin et al. 2018",
    "hallgren": "Hallgren and Sourander 1958",
    "pomponio": "Pomponio et al. 2020",
    "long": "Long and Ervin 2000",
    "bellmccaffrey": "Bell and McCaffrey 2002",
    "bh": "Benjamini and Hochberg 1995",
}


class _Citations:
    """Cite keys in order; :meth:`html` lists the cited references."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def __call__(self, *keys: str) -> str:
        for key in keys:
            if key not in self.keys:
                self.keys.append(key)
        return "; ".join(_CITE[k] for k in keys)

    def html(self) -> str:
        items = "".join(f"<li>{html.escape(REFERENCES[k])}</li>" for k in self.keys)
        return f"<h3>References</h3><ol class='small'>{items}</ol>"


def _join(items: Iterable[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _counts(values: pd.Series) -> list[tuple[object, int]]:
    counts = values.dropna().astype(str).value_counts()
    return list(counts.items())


def _differs(values: pd.Series, what: str, say, sentence) -> str:
    """One sentence: ``sentence(say(value))`` when everyone shares one value, else ``what``
    "differed between participants" with each ``say(value)`` and its count."""
    counts = _counts(values)
    missing = int(values.isna().sum())
    note = f" (not recorded for {missing} participants)" if missing and counts else ""
    if not counts:
        return f"{what} was not recorded."
    if len(counts) == 1:
        return sentence(say(counts[0][0])) + note + "."
    parts = [f"{say(v)} (n = {n})" for v, n in counts]
    return f"{what} differed between participants: " + "; ".join(parts) + note + "."


def _fit_method(method: str, cite: _Citations) -> str:
    solver = SOLVERS.get(method)
    if solver is None:
        return f"the {html.escape(method)} method"
    refs = FIT_REFERENCES.get(method, ())
    ref = f"; {cite(*refs)}" if refs else ""
    return f"the {method} method ({html.escape(solver.description)}{ref})"


def _acquisition(qc: pd.DataFrame, cite: _Citations) -> str:
    protocols = qc.assign(protocol=protocol_summary(qc))
    by_site = protocols.groupby(protocols["site"].astype(str))["protocol"].agg(
        lambda s: " or ".join(dict.fromkeys(s))
    )
    if protocols["protocol"].nunique() == 1:
        text = (
            "Multi-echo gradient-echo (MEGRE) magnitude images were acquired with one protocol "
            f"at every site ({html.escape(protocols['protocol'].iloc[0])})."
        )
    else:
        sites = "; ".join(f"{html.escape(s)}: {html.escape(p)}" for s, p in by_site.items())
        text = (
            "Multi-echo gradient-echo (MEGRE) magnitude images were acquired with protocols that "
            f"differed between sites ({sites})."
        )
    text += " " + _differs(
        qc["fit_method"],
        "The R2* fit method",
        lambda m: _fit_method(m, cite),
        lambda m: f"R2* (1/s) was estimated voxel-wise with {m}",
    )
    dual = qc[qc["n_echoes"] == 2]
    if len(dual):
        closed = "the closed form R2* = ln(S1/S2) / (TE2 - TE1)"
        rician = dual["fit_method"].eq("auto")
        if rician.all():
            how = f"starts from {closed}, refined by the Rician likelihood near the noise floor"
        elif not rician.any():
            how = f"reduces to {closed}"
        else:
            how = f"reduces to {closed} (refined by the Rician likelihood under auto)"
        text += f" With two echoes ({len(dual)} participants) the fit {how}."
    sigma = qc["noise_sigma"].dropna()
    sources = _join(sorted(set(qc["noise_sigma_source"].dropna().astype(str))))
    snr = qc["snr"].dropna()
    if len(sigma):
        text += (
            f" The noise SD of the magnitudes was estimated from the {html.escape(sources)} "
            f"signal; the SNR of the first echo (median fitted first-echo signal in the fit "
            f"mask over the noise SD) had a median of {snr.median():.0f} (range "
            f"{snr.min():.0f}-{snr.max():.0f})."
            if len(snr)
            else "."
        )
    failed = qc["failed_voxel_pct"].dropna()
    if len(failed):
        text += (
            f" The fit failed in a median of {failed.median():.2f} % of the voxels of the fit "
            f"mask (maximum {failed.max():.2f} %)."
        )
    b0 = qc["b0_correction"].map(lambda v: None if pd.isna(v) else v in (True, "True"))
    on = b0.dropna()
    if len(on) and on.all():
        text += (
            " Macroscopic field gradients, from the phase of consecutive echoes, were corrected "
            f"as a known sinc-shaped decay factor in the fit ({cite('yablonskiy', 'dahnke')})."
        )
    elif len(on) and on.any():
        text += (
            f" Macroscopic field gradients were corrected in {int(on.sum())} of {len(on)} "
            f"participants (the others had no phase images or the correction was off; "
            f"{cite('yablonskiy', 'dahnke')})."
        )
    elif len(on):
        text += " No correction for macroscopic field gradients was applied."
    return text


def _regions(qc: pd.DataFrame, cite: _Citations) -> str:
    def source(value: str) -> str:
        if value == "atlas":
            return (
                "from the bundled atlas (Harvard-Oxford subcortical structures; Talairach daemon "
                f"nuclei, {cite('lancaster2000', 'lancaster2007')}) registered to each "
                "participant and refined on R2*"
            )
        return "from the segmentations supplied with the data, resampled to the R2* grid"

    text = _differs(
        qc["segmentation"],
        "The source of the segmentation",
        source,
        lambda s: f"Deep grey matter, white matter and lesions were taken {s}",
    )
    text += " " + _differs(
        qc["min_fraction"],
        "The partial-volume threshold",
        lambda f: f"{float(f) * 100:.0f} %",
        lambda f: (
            f"A voxel counted for a structure when at least {f} of it lay in the "
            "structure (partial-volume threshold) and, for deep grey matter and NAWM, no part of "
            "it in a lesion"
        ),
    )
    erode = qc["erode_mm"].dropna().astype(float)
    if len(erode) and (erode > 0).any():
        text += " " + _differs(
            qc["erode_mm"],
            "The erosion of the structures",
            lambda e: f"{float(e):g} mm",
            lambda e: f"Structures were first eroded by {e}",
        )
    text += (
        " Regional R2* is the median over the voxels of each structure, both hemispheres "
        "pooled; NAWM is cerebral white matter minus lesions."
    )
    counts = {
        r: qc[f"min_voxels_{r}"].dropna() for r in DEEP_GM if f"min_voxels_{r}" in qc.columns
    }
    counts = {r: c for r, c in counts.items() if len(c)}
    if counts:
        small = sorted(counts, key=lambda r: counts[r].median())[:2]
        text += (
            " The smallest structures rested on few voxels (smaller hemisphere, median over "
            "participants): "
            + _join(
                f"the {pretty_region(r)} {counts[r].median():.0f} voxels "
                f"(minimum {counts[r].min():.0f})"
                for r in small
            )
            + "."
        )
    calibrations = qc["iron_calibration"].dropna().astype(str)
    used = [c for c in dict.fromkeys(calibrations) if c in CALIBRATIONS]
    for name in used:
        cal = CALIBRATIONS[name]
        text += (
            f" R2* was converted to iron concentration (mg/kg wet tissue) with the post-mortem "
            f"calibration R2* = {cal.slope:g} [Fe] + {cal.intercept:g} 1/s at "
            f"{cal.field_t:g} T ({cite('langkammer')}; {int((calibrations == name).sum())} of "
            f"{len(qc)} participants)."
        )
    return text


def _harmonisation(age_model: pd.DataFrame, harmonization: dict | None, cite) -> str:
    if not harmonization:
        return ""
    sites = harmonization.get("ControlsPerSite", {})
    pooled = harmonization.get("SitesWithPooledScale", [])
    eb = (
        "with empirical-Bayes pooling across regions"
        if "empirical" in str(harmonization.get("Method", ""))
        else "without empirical-Bayes pooling"
    )
    text = (
        f"Site effects were removed with ComBat ({cite('johnson', 'fortin')}) on log R2*, "
        f"{eb}, fitted on the {sum(sites.values())} healthy controls at {len(sites)} sites ("
        + ", ".join(f"{html.escape(str(s))} {n}" for s, n in sites.items())
        + ") and applied to every participant, preserving age (a regression spline, as in "
        f"ComBat-GAM; {cite('pomponio')}) and sex. Only the site's location was removed from "
        "R2*; its scale (residual SD relative to the pooled one) entered the z-scores, so that "
        "a disease effect at a noisy site was not shrunk with its noise."
    )
    if pooled:
        text += (
            f" Sites with fewer than {MIN_CONTROLS_PER_SITE} controls ("
            + ", ".join(html.escape(str(s)) for s in pooled)
            + ") had their scale pooled over regions and shrunk towards the pooled scale "
            f"(prior of {MIN_CONTROLS_PER_SITE - 1} degrees of freedom)."
        )
    if len(age_model):
        chosen = age_model.groupby("model", sort=False)["region"].agg(list)
        parts = []
        for model, regions in chosen.items():
            parts.append(f"{curve_label(model)} for {_join(pretty_region(r) for r in regions)}")
        text += (
            " The controls' age curve was a quadratic spline, linear beyond the controls' 5th "
            "and 95th age percentiles, constrained non-decreasing and concave in the iron-rich "
            "nuclei (caudate, putamen, pallidum, substantia nigra, red nucleus, dentate "
            f"nucleus), where iron rises with age and levels off ({cite('hallgren')}), with "
            "1-4 knots chosen per region by leave-one-out prediction error: "
            f"{'; '.join(parts)}. Harmonised R2* was "
            "corrected to the controls' median age "
            f"({float(age_model['reference_age'].iloc[0]):.1f} years) with that curve."
        )
    return text


def _statistics(comparison_mixed: pd.DataFrame, determinants: pd.DataFrame, cite) -> str:
    text = (
        "Groups were compared on age-corrected R2* by ordinary least squares with group, age, "
        "sex and site (fixed effect), on the participants at sites holding both arms of a "
        f"contrast, with HC3 heteroscedasticity-robust standard errors ({cite('long')}); Cohen's "
        "d is the difference over the controls' SD, with a 95 % CI from the difference's "
        "t-based CI and the SD's sampling uncertainty (delta method). RRMS, SPMS and PPMS were "
        "compared by a robust Wald F-test. p-values were corrected for the false discovery "
        f"rate across regions within each contrast ({cite('bh')}). Multiplicity across "
        "contrasts followed a pre-specified hierarchy (serial gatekeeping per region): MS "
        "versus controls was the primary family; a phenotype's difference from the controls "
        "and the omnibus test of the phenotypes were declared significant only in regions where "
        "MS versus controls was, and the differences between phenotypes only where the omnibus "
        "test was."
    )
    if len(comparison_mixed):
        text += (
            " A mixed model with a random site intercept (REML) is given as a sensitivity "
            "analysis, with robust standard errors of the generalised least-squares estimate "
            "and a t reference with Bell-McCaffrey degrees of freedom "
            f"({cite('bellmccaffrey')}); fits that did not converge were not declared "
            "significant."
        )
    multi = determinants[determinants["model"] == "multivariable"]["region"].unique()
    text += (
        " In clinically definite MS (CIS excluded), age-corrected R2* was regressed on disease "
        "duration, EDSS, log(1 + T2 lesion volume), normalised brain volume and cortical grey "
        "matter (% of intracranial volume), each alone and, with at least 10 patients per "
        "predictor, together (the pre-specified primary model), with age, sex and site as "
        "covariates"
        + (
            f" (multivariable models for {_join(pretty_region(r) for r in multi)})"
            if len(multi)
            else " (too few patients for any multivariable model)"
        )
        + "; stepwise selection is exploratory and reported with bootstrap inclusion "
        "frequencies. Lesion R2* was modelled with the same covariates, and "
        "relative to each participant's NAWM."
        " Collinearity is reported as variance inflation factors (VIF) and the predictors' "
        f"correlations; a coefficient with VIF above {VIF_LIMIT:g} was taken as not "
        "identifiable in practice (the limit measured in seeded simulations), and for such "
        "regions the pre-specified reduced model (duration and EDSS, same covariates) is "
        "shown beside it. Only the primary model's rows, at p_FDR < 0.05 across its regions "
        "and predictors, are marked significant; univariable, reduced and stepwise rows are "
        "not."
    )
    return text


def _participants(flow: pd.DataFrame) -> str:
    label = labels(flow)
    analysed = flow["status"] == "analysed"
    counts = label[analysed].value_counts()
    ms = int(label[analysed].isin(MS_LABELS).sum())
    phen = ", ".join(f"{g} {counts[g]}" for g in ("RRMS", "SPMS", "PPMS", "MS") if g in counts)
    text = (
        f"Of {len(flow)} participants listed at {flow['site'].nunique()} sites, "
        f"{int(analysed.sum())} were analysed: {int(counts.get('HC', 0))} healthy controls, "
        f"{ms} patients with clinically definite MS ({phen})"
        + (f" and {int(counts['CIS'])} with CIS" if "CIS" in counts else "")
        + "."
    )
    excluded = flow[~analysed]
    if len(excluded):
        kinds = excluded["reason"].str.split(":").str[0].value_counts()
        verb = "was" if len(excluded) == 1 else "were"
        text += (
            f" {len(excluded)} {verb} excluded ("
            + "; ".join(f"{html.escape(k)}: {n}" for k, n in kinds.items())
            + ")."
        )
    return text


def methods_html(
    qc: pd.DataFrame,
    *,
    flow: pd.DataFrame,
    age_model: pd.DataFrame,
    harmonization: dict | None,
    comparison_mixed: pd.DataFrame,
    determinants: pd.DataFrame,
    version: str,
    min_voxels: str = "",
) -> str:
    """The Methods section (HTML paragraphs and the numbered references).

    Parameters
    ----------
    qc : pandas.DataFrame
        ``group/participant_qc.tsv`` (what was acquired and run, per participant); its
        analysed participants are described.
    flow, age_model, comparison_mixed, determinants : pandas.DataFrame
        The group tables of the same names.
    harmonization : dict or None
        ``group/harmonization.json``.
    version : str
        ironmap's version.
    min_voxels : str
        The minimum-voxel rule's sentence (:func:`ironmap.report.analyses.min_voxel_methods`),
        added to the regions paragraph; '' for none.
    """
    cite = _Citations()
    analysed = set(flow.loc[flow["status"] == "analysed", "participant_id"])
    qc = qc[qc["participant_id"].isin(analysed)] if len(qc) else qc
    paragraphs = [
        f"Deep grey-matter R2* was measured as in {cite('ropele')}, with ironmap {version}. "
        + _participants(flow),
    ]
    if len(qc):
        paragraphs += [_acquisition(qc, cite), _regions(qc, cite) + min_voxels]
    paragraphs += [
        _harmonisation(age_model, harmonization, cite),
        _statistics(comparison_mixed, determinants, cite),
    ]
    body = "".join(f"<p>{p}</p>" for p in paragraphs if p)
    return f"<div class='methods'>{body}{cite.html()}</div>"
