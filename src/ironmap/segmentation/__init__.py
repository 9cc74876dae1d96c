"""Segmentation: where the regions come from (user dseg, registered atlas, or none).

A strategy (:mod:`.strategies`) turns a participant's inputs into a fit mask and, after the fit,
a :class:`~ironmap.segmentation.strategies.Segmentation` on the R2* grid. The atlas path
(:mod:`.atlas`, :mod:`.register`, :mod:`.refine`, :mod:`.autoseg`) needs ``ironmap[atlas]``.
"""
