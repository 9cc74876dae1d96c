"""The Methods' acquisition paragraph: the MEGRE protocols per site, the R2* fit (method
and its references, two-echo case, noise SD and SNR, failed voxels) and the correction
for macroscopic field gradients, from ``group/participant_qc.tsv``.
"""

from __future__ import annotations

import html

import pandas as pd

from ..fitting import SOLVERS
from .protocol import protocol_summary
from .references import _Citations
from .sentences import _differs, _join

#: Fit method -> references of its estimator (methods without one cite none).
FIT_REFERENCES = {"auto": ("sijbers", "box"), "arlo": ("pei",)}


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
