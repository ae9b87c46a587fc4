"""The paper's claims, one module each, registered by id: what ``closedloop reproduce``,
``closedloop sweep-summary`` and users' scripts judge.

======  ==================================================  =========  ================
claim   runs of one seed (its roles)                        figure     module
======  ==================================================  =========  ================
C1      closed-loop run, its open-loop twin                 fig1       :mod:`.c1`
C1b     the same pair, in gain space                        fig2       :mod:`.c1b`
C2      a low-rank closed-loop run                          fig3       :mod:`.c2`
C3      runs from prescribed initial sigma_zm               fig3       :mod:`.c3`
C4      a low-rank run, its retraining with other T         fig4       :mod:`.c4`
C5      full and reduced model per control cost             fig5       :mod:`.c5`
C6      a tracking run and its open-loop twin               fig6       :mod:`.c6`
======  ==================================================  =========  ================

:class:`~closedloop.analysis.claims.base.Claim` says what a claim writes and what it gets;
:func:`register_claim` (or an entry point in the group ``closedloop.claims``) adds one. Each
judge returns a :class:`~closedloop.analysis.claims.base.Judgement`: the measured numbers, the
named parts of the written criterion with their outcome (the claim is supported when every
part holds, and ``failed`` names those that do not), and a few headline numbers that the
report tabulates and plots over seeds. The thresholds are named constants of each module.

Example
-------
>>> sorted(CLAIMS.builtin)
['C1', 'C1b', 'C2', 'C3', 'C4', 'C5', 'C6']
>>> from closedloop.runs import load_run
>>> closed, opened = load_run("runs/closed.h5"), load_run("runs/open.h5")  # doctest: +SKIP
>>> judgement = CLAIMS.get("C1").judge(closed, opened)                     # doctest: +SKIP
>>> judgement.supported, judgement.failed                                  # doctest: +SKIP
(True, [])
"""

from closedloop.analysis.claims.base import (
    CLAIMS,
    CLOSED,
    OPENED,
    RUN,
    Claim,
    Judgement,
    finite,
    register_claim,
    registered_claims,
)
from closedloop.analysis.claims.c1 import OpenLoopPeak
from closedloop.analysis.claims.c1b import GainSpacePath
from closedloop.analysis.claims.c2 import ThreeStages
from closedloop.analysis.claims.c3 import StageOneTheory
from closedloop.analysis.claims.c4 import WorldModelTradeOff
from closedloop.analysis.claims.c5 import ReducedModel
from closedloop.analysis.claims.c6 import TrackingStaircase

CLAIMS.builtin.update({claim.id: claim for claim in (
    OpenLoopPeak(), GainSpacePath(), ThreeStages(), StageOneTheory(), WorldModelTradeOff(),
    ReducedModel(), TrackingStaircase())})

__all__ = ["CLAIMS", "CLOSED", "OPENED", "RUN", "Claim", "GainSpacePath", "Judgement",
           "OpenLoopPeak", "ReducedModel", "StageOneTheory", "ThreeStages", "TrackingStaircase",
           "WorldModelTradeOff", "finite", "register_claim", "registered_claims"]
