"""The works the report's Methods may cite: one :class:`Reference` per BibTeX key in
:data:`REFERENCES` (the one home of the reference list: the HTML list,
``group/methods.md`` and ``group/references.bib`` are written from it), and the
citations of one Methods text in order of first citation.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    "chatnuntawech2017": Reference(
        ("Chatnuntawech, I.", "McDaniel, P.", "Cauley, S. F.", "others"),
        "Single-step quantitative susceptibility mapping with variational penalties",
        "NMR Biomed",
        2017,
        "30",
        "e3570",
        "10.1002/nbm.3570",
    ),
    "bilgic2014": Reference(
        ("Bilgic, B.", "Chatnuntawech, I.", "Fan, A. P.", "others"),
        "Fast image reconstruction with L2-regularization",
        "J Magn Reson Imaging",
        2014,
        "40",
        "181--191",
        "10.1002/jmri.24365",
    ),
    "robinson2017": Reference(
        ("Robinson, S. D.", "Bredies, K.", "Khabipova, D.", "others"),
        "An illustrated comparison of processing methods for MR phase imaging and QSM: "
        "combining array coil signals and phase unwrapping",
        "NMR Biomed",
        2017,
        "30",
        "e3601",
        "10.1002/nbm.3601",
    ),
    "bagnato2024": Reference(
        ("Bagnato, F.", "Sati, P.", "Hemond, C. C.", "others"),
        "Imaging chronic active lesions in multiple sclerosis: a consensus statement",
        "Brain",
        2024,
        "147",
        "2913--2933",
        "10.1093/brain/awae013",
    ),
}


class _Citations:
    """Cite keys in order of first citation; a call returns the author-year text."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def __call__(self, *keys: str) -> str:
        for key in keys:
            if key not in self.keys:
                self.keys.append(key)
        return "; ".join(REFERENCES[k].cite for k in keys)
