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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..cohort.age import MIN_CONTROLS_PER_SITE
from ..cohort.compare import MS_LABELS
from ..cohort.demographics import MIN_EXPECTED
from ..cohort.determinants import N_BOOTSTRAP, UNITS, VIF_LIMIT
from ..fitting import SOLVERS
from ..io import atomic_write_bytes
from ..io.derivatives import METHODS_MD, REFERENCES_BIB, group_path
from ..iron import CALIBRATIONS
from ..regions.catalog import CATALOG
from ..regions.csf import CORE_RATIO, RIM_RATIO, WALL_RATIO
from ..regions.labels import DEEP_GM
from .protocol import protocol_summary
from .style import labels, pretty_region
from .tables import curve_label

__all__ = ["REFERENCES", "Methods", "Reference", "methods", "methods_html", "write_methods"]


@dataclass(frozen=True)
class Reference:
    """One cited work: the fields of its BibTeX ``@article`` entry.

    Attributes
    ----------
    authors : tuple of str
        ``"Last, Initials"`` in the order of the paper; ``"others"`` for *et al.*
    title, journal : str
    year : int
    volume, pages : str
        ``pages`` as ``first--last`` (BibTeX) or an article number.
    doi : str or None
        Without ``https://doi.org/``; None for a journal without DOIs.
    """

    authors: tuple[str, ...]
    title: str
    journal: str
    year: int
    volume: str
    pages: str
    doi: str | None = None

    @property
    def cite(self) -> str:
        """Author-year in-text citation: ``Box 1971``, ``Dahnke and Schaeffter 2005``,
        ``Ropele et al. 2014``."""
        last = [a.split(",")[0] for a in self.authors]
        if len(last) == 1:
            return f"{last[0]} {self.year}"
        if len(last) == 2 and last[1] != "others":
            return f"{last[0]} and {last[1]} {self.year}"
        return f"{last[0]} et al. {self.year}"

    @property
    def text(self) -> str:
        """Vancouver style: ``Ropele S, Kilsdonk ID, Wattjes MP, et al. Title. Journal
        2014;20:1692-8.`` (pages abbreviated as in the original list)."""

        def short(author: str) -> str:
            last, _, first = author.partition(",")
            return f"{last} {first.replace('.', '').replace(' ', '')}".strip()

        names = [short(a) for a in self.authors if a != "others"]
        names += ["et al"] if "others" in self.authors else []
        first, _, last = self.pages.partition("--")
        common = 0  # 1692--1698 -> 1692-8: the last page without the digits it shares
        if len(first) == len(last):
            while common < len(last) - 1 and first[common] == last[common]:
                common += 1
        pages = f"{first}-{last[common:]}" if last else first
        title = self.title.rstrip(".")
        return f"{', '.join(names)}. {title}. {self.journal} {self.year};{self.volume}:{pages}."

    def bibtex(self, key: str) -> str:
        """The ``@article{key, ...}`` entry."""
        fields = {
            "author": " and ".join(self.authors),
            "title": "{" + self.title + "}",
            "journal": self.journal,
            "year": str(self.year),
            "volume": self.volume,
            "pages": self.pages,
            **({"doi": self.doi} if self.doi else {}),
        }
        body = ",\n".join(f"  {k} = {{{v}}}" for k, v in fields.items())
        return f"@article{{{key},\n{body}\n}}\n"


#: Every work the Methods may cite, by BibTeX key (the one home of the references: the HTML
#: list, ``group/methods.md`` and ``group/references.bib`` are written from it).
REFERENCES: dict[str, Reference] = {
    "ropele": Reference(
        ("Ropele, S.", "Kilsdonk, I. D.", "Wattjes, M. P.", "others"),
        "Determinants of iron accumulation in deep grey matter of multiple sclerosis patients",
        "Mult Scler",
        2014,
        "20",
        "1692--1698",
        "10.1177/1352458514531085",
    ),
    "sijbers": Reference(
        ("Sijbers, J.", "den Dekker, A. J.", "Scheunders, P.", "Van Dyck, D."),
        "Maximum-likelihood estimation of Rician distribution parameters",
        "IEEE Trans Med Imaging",
        1998,
        "17",
        "357--361",
        "10.1109/42.712125",
    ),
    "box": Reference(
        ("Box, M. J.",),
        "Bias in nonlinear estimation",
        "J R Stat Soc B",
        1971,
        "33",
        "171--201",
        "10.1111/j.2517-6161.1971.tb00871.x",
    ),
    "pei": Reference(
        ("Pei, M.", "Nguyen, T. D.", "Thimmappa, N. D.", "others"),
        "Algorithm for fast monoexponential fitting based on Auto-Regression on Linear "
        "Operations (ARLO) of data",
        "Magn Reson Med",
        2015,
        "73",
        "843--850",
        "10.1002/mrm.25137",
    ),
    "yablonskiy": Reference(
        ("Yablonskiy, D. A.",),
        "Quantitation of intrinsic magnetic susceptibility-related effects in a tissue "
        "matrix. Phantom study",
        "Magn Reson Med",
        1998,
        "39",
        "417--428",
        "10.1002/mrm.1910390312",
    ),
    "dahnke": Reference(
        ("Dahnke, H.", "Schaeffter, T."),
        "Limits of detection of SPIO at 3.0 T using T2* relaxometry",
        "Magn Reson Med",
        2005,
        "53",
        "1202--1206",
        "10.1002/mrm.20435",
    ),
    "lancaster2000": Reference(
        ("Lancaster, J. L.", "Woldorff, M. G.", "Parsons, L. M.", "others"),
        "Automated Talairach atlas labels for functional brain mapping",
        "Hum Brain Mapp",
        2000,
        "10",
        "120--131",
        "10.1002/1097-0193(200007)10:3<120::AID-HBM30>3.0.CO;2-8",
    ),
    "lancaster2007": Reference(
        ("Lancaster, J. L.", "Tordesillas-Gutierrez, D.", "Martinez, M.", "others"),
        "Bias between MNI and Talairach coordinates analyzed using the ICBM-152 brain template",
        "Hum Brain Mapp",
        2007,
        "28",
        "1194--1205",
        "10.1002/hbm.20345",
    ),
    "langkammer": Reference(
        ("Langkammer, C.", "Krebs, N.", "Goessler, W.", "others"),
        "Quantitative MR imaging of brain iron: a postmortem validation study",
        "Radiology",
        2010,
        "257",
        "455--462",
        "10.1148/radiol.10100495",
    ),
    "johnson": Reference(
        ("Johnson, W. E.", "Li, C.", "Rabinovic, A."),
        "Adjusting batch effects in microarray expression data using empirical Bayes methods",
        "Biostatistics",
        2007,
        "8",
        "118--127",
        "10.1093/biostatistics/kxj037",
    ),
    "fortin": Reference(
        ("Fortin, J. P.", "Cullen, N.", "Sheline, Y. I.", "others"),
        "Harmonization of cortical thickness measurements across scanners and sites",
        "NeuroImage",
        2018,
        "167",
        "104--120",
        "10.1016/j.neuroimage.2017.11.024",
    ),
    "hallgren": Reference(
        ("Hallgren, B.", "Sourander, P."),
        "The effect of age on the non-haemin iron in the human brain",
        "J Neurochem",
        1958,
        "3",
        "41--51",
        "10.1111/j.1471-4159.1958.tb12607.x",
    ),
    "pomponio": Reference(
        ("Pomponio, R.", "Erus, G.", "Habes, M.", "others"),
        "Harmonization of large MRI datasets for the analysis of brain imaging patterns "
        "throughout the lifespan",
        "NeuroImage",
        2020,
        "208",
        "116450",
        "10.1016/j.neuroimage.2019.116450",
    ),
    "long": Reference(
        ("Long, J. S.", "Ervin, L. H."),
        "Using heteroscedasticity consistent standard errors in the linear regression model",
        "Am Stat",
        2000,
        "54",
        "217--224",
        "10.1080/00031305.2000.10474549",
    ),
    "bellmccaffrey": Reference(
        ("Bell, R. M.", "McCaffrey, D. F."),
        "Bias reduction in standard errors for linear regression with multi-stage samples",
        "Survey Methodology",
        2002,
        "28",
        "169--181",
    ),
    "bh": Reference(
        ("Benjamini, Y.", "Hochberg, Y."),
        "Controlling the false discovery rate: a practical and powerful approach to multiple "
        "testing",
        "J R Stat Soc B",
        1995,
        "57",
        "289--300",
        "10.1111/j.2517-6161.1995.tb02031.x",
    ),
    "by2005": Reference(
        ("Benjamini, Y.", "Yekutieli, D."),
        "False discovery rate-adjusted multiple confidence intervals for selected parameters",
        "J Am Stat Assoc",
        2005,
        "100",
        "71--81",
        "10.1198/016214504000001907",
    ),
    "fischl2002": Reference(
        ("Fischl, B.", "Salat, D. H.", "Busa, E.", "others"),
        "Whole brain segmentation: automated labeling of neuroanatomical structures in the "
        "human brain",
        "Neuron",
        2002,
        "33",
        "341--355",
        "10.1016/S0896-6273(02)00569-X",
    ),
    "henschel2020": Reference(
        ("Henschel, L.", "Conjeti, S.", "Estrada, S.", "others"),
        "FastSurfer - A fast and accurate deep learning based neuroimaging pipeline",
        "NeuroImage",
        2020,
        "219",
        "117012",
        "10.1016/j.neuroimage.2020.117012",
    ),
    "billot2023": Reference(
        ("Billot, B.", "Greve, D. N.", "Puonti, O.", "others"),
        "SynthSeg: Segmentation of brain MRI scans of any contrast and resolution without "
        "retraining",
        "Med Image Anal",
        2023,
        "86",
        "102789",
        "10.1016/j.media.2023.102789",
    ),
    # quantitative susceptibility mapping (the QSM paragraph, :func:`_qsm`)
    "schweser2011": Reference(
        ("Schweser, F.", "Deistung, A.", "Lehr, B. W.", "Reichenbach, J. R."),
        "Quantitative imaging of intrinsic magnetic tissue properties using MRI signal phase: "
        "an approach to in vivo brain iron metabolism?",
        "NeuroImage",
        2011,
        "54",
        "2789--2807",
        "10.1016/j.neuroimage.2010.10.070",
    ),
    "li2011": Reference(
        ("Li, W.", "Wu, B.", "Liu, C."),
        "Quantitative susceptibility mapping of human brain reflects spatial variation in "
        "tissue composition",
        "NeuroImage",
        2011,
        "55",
        "1645--1656",
        "10.1016/j.neuroimage.2010.11.088",
    ),
    "liu2011pdf": Reference(
        ("Liu, T.", "Khalidov, I.", "de Rochefort, L.", "others"),
        "A novel background field removal method for MRI using projection onto dipole fields "
        "(PDF)",
        "NMR Biomed",
        2011,
        "24",
        "1129--1136",
        "10.1002/nbm.1670",
    ),
    "zhou2014": Reference(
        ("Zhou, D.", "Liu, T.", "Spincemaille, P.", "Wang, Y."),
        "Background field removal by solving the Laplacian boundary value problem",
        "NMR Biomed",
        2014,
        "27",
        "312--319",
        "10.1002/nbm.3064",
    ),
    "shmueli2009": Reference(
        ("Shmueli, K.", "de Zwart, J. A.", "van Gelderen, P.", "others"),
        "Magnetic susceptibility mapping of brain tissue in vivo using MRI phase data",
        "Magn Reson Med",
        2009,
        "62",
        "1510--1522",
        "10.1002/mrm.22135",
    ),
    "liu2012medi": Reference(
        ("Liu, J.", "Liu, T.", "de Rochefort, L.", "others"),
        "Morphology enabled dipole inversion for quantitative susceptibility mapping using "
        "structural consistency between the magnitude image and the susceptibility map",
        "NeuroImage",
        2012,
        "59",
        "2560--2568",
        "10.1016/j.neuroimage.2011.08.082",
    ),
    "qsmconsensus2024": Reference(
        ("QSM Consensus Organization Committee", "Bilgic, B.", "Costagli, M.", "others"),
        "Recommended implementation of quantitative susceptibility mapping for clinical "
        "research in the brain: a consensus of the ISMRM electro-magnetic tissue properties "
        "study group",
        "Magn Reson Med",
        2024,
        "91",
        "1834--1862",
        "10.1002/mrm.30006",
    ),
    "stewart2022": Reference(
        ("Stewart, A. W.", "Robinson, S. D.", "O'Brien, K.", "others"),
        "QSMxT: Robust masking and artifact reduction for quantitative susceptibility mapping",
        "Magn Reson Med",
        2022,
        "87",
        "1289--1300",
        "10.1002/mrm.29048",
    ),
}
#: QSM step method (``QSMMethods`` of the Chimap sidecar) -> its words and references; a
#: method not listed is named as recorded, without a reference.
QSM_METHODS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "sharp": ("SHARP", "", ("schweser2011",)),
    "vsharp": ("V-SHARP", "", ("li2011",)),
    "pdf": ("projection onto dipole fields", "PDF", ("liu2011pdf",)),
    "lbv": ("the Laplacian boundary value method", "LBV", ("zhou2014",)),
    "tkd": ("truncated k-space division", "TKD", ("shmueli2009",)),
    "medi": ("morphology-enabled dipole inversion", "MEDI", ("liu2012medi",)),
}
#: Fit method -> references of its estimator (methods without one cite none).
FIT_REFERENCES = {"auto": ("sijbers", "box"), "arlo": ("pei",)}


class _Citations:
    """Cite keys in order of first citation; a call returns the author-year text."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def __call__(self, *keys: str) -> str:
        for key in keys:
            if key not in self.keys:
                self.keys.append(key)
        return "; ".join(REFERENCES[k].cite for k in keys)


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
            "total field from the echoes' complex differences in the intracranial volume, "
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
    return text + (
        " Regional chi was the median over the very voxels of regional R2*, and was analysed "
        "with the same harmonisation, normative model, comparisons and determinants as R2*, on "
        "its own linear scale (chi is relative to a reference region and can be negative: "
        "site offsets are additive and differences absolute, reported in ppb)."
    )


def _atlas_sources(cite: _Citations, *, only: Iterable[str] | None = None) -> str:
    """Which atlas labelled which deep grey-matter structure (from the region catalogue);
    ``only`` these structures when given."""
    keep = set(DEEP_GM if only is None else only)
    ho = [r.name for r in CATALOG if r.name in keep and r.harvard_oxford]
    tal = [r.name for r in CATALOG if r.name in keep and r.talairach is not None]
    parts = []
    if ho:
        parts.append(
            f"{_join(pretty_region(r) for r in ho)} from the Harvard-Oxford subcortical atlas"
        )
    if tal:
        parts.append(
            f"{_join(pretty_region(r) for r in tal)} from the Talairach daemon labels, "
            f"{cite('lancaster2000', 'lancaster2007')}"
        )
    return "; ".join(parts)


def _registered(qc: pd.DataFrame) -> str:
    """The sentence on dsegs whose own image was registered to the GRE (empty when none was:
    ``segmentation_registered`` of participant_qc.tsv)."""
    if "segmentation_registered" not in qc.columns:
        return ""
    done = qc["segmentation_registered"].map(lambda v: v in (True, "True", "yes"))
    if not done.any():
        return ""
    return (
        f" For {int(done.sum())} of {len(qc)} participants the image the segmentation was made "
        "on (T1w or FLAIR) was registered rigidly (6 degrees of freedom; ANTs, Mattes mutual "
        "information) to the first echo, and the segmentation and lesion mask were carried onto "
        "the GRE by that transform (head motion between the scans; registration_shift_mm in "
        "participant_qc.tsv)."
    )


def _segmentation_source(qc: pd.DataFrame) -> pd.Series:
    """``segmentation_source`` of each participant; for a table without it (made before the
    column), ``atlas`` for ``--segmentation atlas`` and ``dseg`` for ``auto`` (which writes
    regions only from a dseg)."""
    if "segmentation_source" in qc.columns:
        return qc["segmentation_source"]
    return qc["segmentation"].map(
        lambda s: np.nan if pd.isna(s) else ("atlas" if s == "atlas" else "dseg")
    )


def _regions(qc: pd.DataFrame, cite: _Citations) -> str:
    labels = qc["label_source"] if "label_source" in qc.columns else pd.Series(None, qc.index)
    filled = qc["atlas_regions"] if "atlas_regions" in qc.columns else pd.Series(None, qc.index)
    source = pd.Series(
        [
            s
            if s not in ("dseg", "hybrid")
            else f"dseg:{'' if pd.isna(label) else label}"
            + ("" if s == "dseg" or pd.isna(atlas) else f"|{atlas}")
            for s, label, atlas in zip(_segmentation_source(qc), labels, filled, strict=True)
        ],
        index=qc.index,
        dtype=object,
    )

    def say(value: str) -> str:
        if "|" in value:  # --segmentation hybrid: the dseg, the atlas for what it lacks
            value, atlas = value.split("|")
            regions = atlas.split(";")
            return (
                say(value) + f"; the {_join(pretty_region(r) for r in regions)}, which it does "
                "not label, from the bundled atlas registered to the participant and refined on "
                f"R2* ({_atlas_sources(cite, only=regions)}), the participant's own label kept "
                "where both labelled a voxel"
            )
        if value == "atlas":
            return (
                "from the bundled atlas registered to each participant and refined on R2* ("
                + _atlas_sources(cite)
                + ")"
            )
        how = {
            "dseg:dseg.tsv": "; labels matched by name from its dseg.tsv",
            "dseg:aseg codes": "; labels read as FreeSurfer aseg codes, without a dseg.tsv",
        }.get(value, "")
        tool = {
            "dseg:freesurfer": ("FreeSurfer or FastSurfer aseg", ("fischl2002", "henschel2020")),
            "dseg:synthseg": ("SynthSeg", ("billot2023",)),
        }.get(value)
        if tool is not None:
            return (
                f"from each participant's own segmentation ({tool[0]}; {cite(*tool[1])}), "
                "labels read as FreeSurfer LUT codes, resampled to the R2* grid"
            )
        return (
            "from each participant's own segmentation (BIDS dseg image of the input "
            f"derivatives{how}), resampled to the R2* grid"
        )

    text = _differs(
        source,
        "The source of the segmentation",
        say,
        lambda s: f"Deep grey matter and white matter were taken {s}",
    )
    if "lesion_mask" in qc.columns:
        mask = qc["lesion_mask"].map(lambda v: None if pd.isna(v) else v in (True, "True"))
        with_mask = int(mask.fillna(False).astype(bool).sum())
        if with_mask:
            text += (
                f" Lesions were taken from the participants' lesion masks (label-lesion_mask; "
                f"{with_mask} of {len(qc)} participants)."
            )
        elif mask.notna().any():
            text += " No participant had a lesion mask."
    text += _registered(qc)
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
    text += _csf(qc)
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


def _csf(qc: pd.DataFrame) -> str:
    """The CSF-like voxels left out (``--csf-exclusion``), with the thresholds of
    :mod:`ironmap.regions.csf` and the shares of ``csf_excluded_pct_<region>``."""
    if "csf_exclusion" not in qc.columns or qc["csf_exclusion"].isna().all():
        return ""
    on = qc["csf_exclusion"].astype(str).eq("on")
    how = (
        "voxels whose R2* indicated cerebrospinal fluid were then left out of each deep "
        "grey-matter structure and NAWM: with T the structure's tissue R2* (the median of its "
        "voxels above "
        f"{CORE_RATIO:g} times their 90th percentile), the voxels below {CORE_RATIO:g} T, their "
        f"neighbours below {RIM_RATIO:g} T and the voxels next to the segmentation's CSF below "
        f"{WALL_RATIO:g} T (partial volume with CSF)"
    )
    if on.all():
        text = f" {how[0].upper()}{how[1:]}."
    elif not on.any():
        return " Voxels with CSF-like R2* were not left out (CSF exclusion off)."
    else:
        text = f" In {int(on.sum())} of {len(qc)} participants (CSF exclusion on), {how}."
    columns = [f"csf_excluded_pct_{r}" for r in DEEP_GM if f"csf_excluded_pct_{r}" in qc]
    shares = qc.loc[on, columns].apply(pd.to_numeric, errors="coerce")
    if shares.notna().any().any():
        stacked = shares.stack()
        touched = int((shares > 0).any(axis=1).sum())
        worst = stacked.idxmax()
        region = pretty_region(worst[1].removeprefix("csf_excluded_pct_"))
        text += (
            f" This removed voxels in {touched} of {int(on.sum())} participants, at most "
            f"{stacked.max():.1f} % of a structure ({region}, "
            f"{html.escape(str(qc.at[worst[0], 'participant_id']))})."
            if touched
            else " No voxel of a deep grey-matter structure was CSF-like."
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


def _statistics(
    comparison_mixed: pd.DataFrame, determinants: pd.DataFrame, cite, mixed_table: str | None
) -> str:
    text = (
        "In Table 1, the controls and all clinically definite MS were compared by Welch's "
        "t-test (age, normalised brain volume) and the chi-square test of sex (Yates-corrected; "
        f"Fisher's exact test when an expected count was below {MIN_EXPECTED}); EDSS quartiles "
        "are observed scores. "
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
    if mixed_table and len(comparison_mixed):
        converged = comparison_mixed["converged"].astype(str).eq("True")
        failed = int((~converged).sum())
        text += (
            " As a sensitivity analysis, the differences were refitted by a mixed model with a "
            f"random site intercept instead of the site fixed effect (REML; {mixed_table}), "
            "with robust standard errors of the generalised least-squares estimate and a t "
            f"reference with Bell-McCaffrey degrees of freedom ({cite('bellmccaffrey')}); "
            + (
                f"{failed} of {len(comparison_mixed)} fits did not converge and were not "
                "declared significant."
                if failed
                else f"all {len(comparison_mixed)} fits converged."
            )
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
        + _stepwise(determinants)
        + " Lesion R2* was modelled with the same covariates, and "
        "relative to each participant's NAWM."
        " Collinearity is reported as variance inflation factors (VIF) and the predictors' "
        f"correlations; a coefficient with VIF above {VIF_LIMIT:g} was taken as not "
        "identifiable in practice (the limit measured in seeded simulations), and for such "
        "regions the pre-specified reduced model (duration and EDSS, same covariates) is "
        "shown beside it. Only the primary model's rows, at p_FDR < 0.05 across its regions "
        "and predictors, are marked significant; univariable, reduced and stepwise rows are "
        "not. Coefficients are reported in 1/s per "
        + _join(
            f"{unit} ({_PREDICTOR_NAMES.get(p, p.replace('_', ' '))})"
            for p, (unit, _) in UNITS.items()
        )
        + "."
    )
    if determinants["model"].isin(["multivariable", "univariable"]).any():
        text += (
            " The forest plot's intervals are false-coverage-rate adjusted "
            f"({cite('by2005')}): with R of the m tests of a family at p_FDR < 0.05, "
            "confidence intervals at level 1 - 0.05 R / m, which exclude 0 exactly for the "
            "tests marked significant."
        )
    return text


#: How the Methods name the determinants beside their units ("SD (normalised brain volume)").
_PREDICTOR_NAMES = {
    "edss": "EDSS",
    "lesion_volume_ml": "T2 lesion volume",
    "nbv": "normalised brain volume",
    "cortical_gm_ml": "cortical grey matter",
}


def _stepwise(determinants: pd.DataFrame) -> str:
    """How the stepwise selection was reported: with the bootstrap inclusion frequencies of
    ``determinants.tsv`` when it has them (:data:`~ironmap.cohort.determinants.N_BOOTSTRAP`
    resamples of the patients with replacement, not stratified)."""
    stepwise = determinants[determinants["model"] == "stepwise"]
    if stepwise.empty:
        return "."
    frequency = pd.to_numeric(stepwise.get("inclusion_frequency"), errors="coerce")
    if frequency is None or frequency.isna().all():
        return "; stepwise selection is exploratory (no bootstrap)."
    return (
        "; stepwise selection is exploratory and reported with each predictor's inclusion "
        f"frequency over {N_BOOTSTRAP} bootstrap resamples of the patients (drawn with "
        "replacement, not stratified)."
    )


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


@dataclass(frozen=True)
class Methods:
    """The Methods as paragraphs and the references they cite, for the report, Markdown and
    BibTeX.

    Attributes
    ----------
    paragraphs : tuple of str
        Plain sentences, HTML-escaped (no tags).
    keys : tuple of str
        The cited :data:`REFERENCES` keys, in order of first citation.
    """

    paragraphs: tuple[str, ...]
    keys: tuple[str, ...]

    def html(self) -> str:
        """The report's section: ``<div class='methods'>`` with paragraphs and references."""
        body = "".join(f"<p>{p}</p>" for p in self.paragraphs)
        items = "".join(f"<li>{html.escape(REFERENCES[k].text)}</li>" for k in self.keys)
        return (
            f"<div class='methods'>{body}<h3>References</h3><ol class='small'>{items}</ol></div>"
        )

    def markdown(self) -> str:
        """``group/methods.md``: the same paragraphs, then the references with their DOI and
        their key in ``group/references.bib`` (``[@key]``)."""
        refs = []
        for n, key in enumerate(self.keys, start=1):
            ref = REFERENCES[key]
            doi = f" https://doi.org/{ref.doi}" if ref.doi else ""
            refs.append(f"{n}. {ref.text}{doi} [@{key}]")
        return (
            "## Methods\n\n"
            + "".join(f"{html.unescape(p)}\n\n" for p in self.paragraphs)
            + f"## References\n\nBibTeX: {REFERENCES_BIB} (keys in brackets).\n\n"
            + "\n".join(refs)
            + "\n"
        )

    def bibtex(self) -> str:
        """``group/references.bib``: exactly the cited references, in citation order."""
        return "\n".join(REFERENCES[k].bibtex(k) for k in self.keys)


def methods(
    qc: pd.DataFrame,
    *,
    flow: pd.DataFrame,
    age_model: pd.DataFrame,
    harmonization: dict | None,
    comparison_mixed: pd.DataFrame,
    determinants: pd.DataFrame,
    version: str,
    mixed_table: str | None = None,
    min_voxels: str = "",
) -> Methods:
    """The Methods written from what was run.

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
    mixed_table : str, optional
        The label of the report's table of the mixed-model sensitivity analysis (e.g.
        ``"Table S2"``); the Methods describe that analysis only with it (the report shows
        the table only when it has rows).
    min_voxels : str
        The minimum-voxel rule's sentence (:func:`ironmap.report.analyses.min_voxel_methods`),
        added to the regions paragraph; '' for none.

    Returns
    -------
    Methods
        The paragraphs and the cited references' keys, in citation order.
    """
    cite = _Citations()
    analysed = set(flow.loc[flow["status"] == "analysed", "participant_id"])
    qc = qc[qc["participant_id"].isin(analysed)] if len(qc) else qc
    paragraphs = [
        f"Deep grey-matter R2* was measured as in {cite('ropele')}, with ironmap {version}. "
        + _participants(flow),
    ]
    if len(qc):
        paragraphs += [_acquisition(qc, cite), _regions(qc, cite) + min_voxels, _qsm(qc, cite)]
    paragraphs += [
        _harmonisation(age_model, harmonization, cite),
        _statistics(comparison_mixed, determinants, cite, mixed_table),
    ]
    return Methods(tuple(p for p in paragraphs if p), tuple(cite.keys))


def methods_html(qc: pd.DataFrame, **options) -> str:
    """The Methods section as HTML paragraphs and the numbered references (:func:`methods`,
    the same keyword-only options)."""
    return methods(qc, **options).html()


def write_methods(output_dir: str | Path, text: Methods) -> list[Path]:
    """Write ``group/methods.md`` and ``group/references.bib`` (atomically) of ``OUTPUT_DIR``.

    Returns
    -------
    list of Path
        The two files.
    """
    paths = [group_path(output_dir, METHODS_MD), group_path(output_dir, REFERENCES_BIB)]
    for path, content in zip(paths, (text.markdown(), text.bibtex()), strict=True):
        atomic_write_bytes(path, content.encode("utf-8"))
    return paths
