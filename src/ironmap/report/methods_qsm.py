"""The Methods' susceptibility paragraph: how chi was mapped (QSM steps and their
references, reference region) or taken from external maps, from the ``qsm*`` columns
of ``group/participant_qc.tsv``.
"""

from __future__ import annotations

import html

import pandas as pd

from ..regions.lesions import (
    PRL_BAND_IN_VOXELS,
    PRL_CHI_PER_R2STAR,
    PRL_SCORE_PPM,
    PRL_SECTORS,
    PRL_SHELL_MM,
)
from .references import _Citations
from .sentences import _differs

#: QSM step method (``QSMMethods`` of the Chimap sidecar) -> its words and references; a
#: method not listed is named as recorded, without a reference.
QSM_METHODS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "sharp": ("SHARP", "", ("schweser2011",)),
    "vsharp": ("V-SHARP", "", ("li2011",)),
    "pdf": ("projection onto dipole fields", "PDF", ("liu2011pdf",)),
    "lbv": ("the Laplacian boundary value method", "LBV", ("zhou2014",)),
    "smv": (
        "a single step with the local field's spherical-mean-value high-pass in the data "
        "term of the inversion",
        "",
        ("chatnuntawech2017",),
    ),
    "tkd": ("truncated k-space division", "TKD", ("shmueli2009",)),
    "l2": ("closed-form gradient (L2) regularisation", "", ("bilgic2014",)),
    "medi": ("morphology-enabled dipole inversion", "MEDI", ("liu2012medi",)),
}


def _qsm_method(method, cite: _Citations) -> str:
    """A QSM step's words with its reference (:data:`QSM_METHODS`)."""
    words, short, refs = QSM_METHODS.get(str(method), (html.escape(str(method)), "", ()))
    inside = "; ".join(x for x in (short, cite(*refs) if refs else "") if x)
    return f"{words} ({inside})" if inside else words


def _qsm(qc: pd.DataFrame, cite: _Citations) -> str:
    """The susceptibility paragraph, from ``participant_qc.tsv``'s ``qsm*`` columns (the
    participants' provenance): computed (steps, reference region) or external maps; '' when
    no participant has a susceptibility map."""
    if "qsm" not in qc:
        return ""
    source = qc["qsm"].astype(str)
    computed, external = qc[source == "computed"], qc[source == "external"]
    if computed.empty and external.empty:
        return ""
    n = len(qc)
    text = ""
    if len(computed):
        who = "every participant" if len(computed) == n else f"{len(computed)} of {n} participants"
        text += (
            "Magnetic susceptibility (chi, ppm) was mapped from the phase of the echoes in "
            f"{who} (quantitative susceptibility mapping, QSM; {cite('qsmconsensus2024')}): the "
            "total field by a magnitude-weighted fit over the echoes of their spatially "
            f"unwrapped phase ({cite('robinson2017')}) in the intracranial volume, "
            + _differs(
                computed["qsm_background"],
                "The background field removal",
                lambda m: _qsm_method(m, cite),
                lambda m: f"background field removal by {m}",
            ).rstrip(".")
            + ", and "
            + _differs(
                computed["qsm_inversion"],
                "The dipole inversion",
                lambda m: _qsm_method(m, cite),
                lambda m: f"dipole inversion by {m}",
            )
            + " "
            + _differs(
                computed["qsm_reference"],
                "The reference region",
                html.escape,
                lambda r: f"Chi was referenced to the mean of the {r}",
            )
        )
    if len(external):
        who = "every participant" if len(external) == n else f"{len(external)} of {n} participants"
        text += (
            (" " if text else "")
            + f"For {who} a susceptibility map computed elsewhere and found in the input "
            f"derivatives (e.g. by QSMxT; {cite('stewart2022')}) was used instead, resampled "
            "to the R2* grid and taken to be in ppm."
        )
    text += _prl(qc[source.isin(("computed", "external"))], cite)
    return text + (
        " Regional chi was the median over the very voxels of regional R2*, and was analysed "
        "with the same harmonisation, normative model, comparisons and determinants as R2*, on "
        "its own linear scale (chi is relative to a reference region and can be negative: "
        "site offsets are additive and differences absolute, reported in ppb)."
    )


def _prl(chi: pd.DataFrame, cite: _Citations) -> str:
    """The PRL sentence (:func:`ironmap.regions.lesions.prl_scores`'s definition and the
    candidate threshold) when a participant with a chi map had a lesion mask (lesion chi
    existed, ``lesion_mask`` of ``participant_qc.tsv``); '' otherwise."""
    if "lesion_mask" not in chi or not chi["lesion_mask"].isin((True, "True")).any():
        return ""
    return (
        f" Paramagnetic rim lesions (PRL; {cite('bagnato2024')}) were scored on chi per lesion:"
        f" in a band straddling the lesion mask's edge ({PRL_BAND_IN_VOXELS} voxel layers inside"
        " its 50 % boundary and its partial-volume voxels outside), chi in excess of the"
        " partial-volume mixture of lesion and normal-appearing white matter (a shell out to"
        f" {PRL_SHELL_MM:g} mm), with R2* as supporting evidence ({PRL_CHI_PER_R2STAR:g} ppm per"
        " 1/s) and vessels left out, was averaged in each of"
        f" {PRL_SECTORS} directional sectors; the PRL score was the median sector excess, and a"
        f" lesion with a score of at least {PRL_SCORE_PPM:g} ppm was a PRL candidate. The number"
        " of PRL candidates per participant was summarised by group (Table 1)."
    )
