"""Synthetic data with known ground truth: a digital head phantom and a multicentre MS cohort.

:func:`~ironmap.workflows.simulate.run_simulate` (``ironmap simulate``) writes a whole BIDS
cohort; the pieces (:mod:`.anatomy`, :mod:`.tissue`, :mod:`.signal`, :mod:`.cohort`,
:mod:`.subject`, :mod:`.bids`) can be used on their own.
"""

from .cohort import SITES, Site, Subject, draw_cohort, participants_table
from .signal import Protocol
from .subject import SubjectData, generate_subject, truth_summary

__all__ = [
    "SITES",
    "Protocol",
    "Site",
    "Subject",
    "SubjectData",
    "draw_cohort",
    "generate_subject",
    "participants_table",
    "truth_summary",
]
