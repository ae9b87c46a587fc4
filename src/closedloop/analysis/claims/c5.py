"""Claim C5: stage 3 and the four-overlap reduced model (science 4, 7.5).

Example
-------
>>> ReducedModel().figure, list(ReducedModel().roles)
('fig5', ['pairs'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from closedloop.analysis.claims.base import Claim, Judgement, ratio
from closedloop.runs.store import Run

FINAL_RATIO = 1.25          # reduced/full final test loss within [1/1.25, 1.25]
CURVE_DECADES = 0.5         # and per-epoch training losses within half a decade


class ReducedModel(Claim):
    """C5: the reduced model, trained on its four overlaps from the stabilisation epoch,
    reproduces the full model for every control cost."""

    id = "C5"
    statement = ("Trained directly on its four overlaps from the stabilisation epoch, the "
                 "reduced model reproduces the full model's loss curve and final eigenvalues, "
                 "for every control cost beta.")
    roles: ClassVar = {"pairs": "per control cost beta, the full and the reduced model trained "
                                "from a low-rank run's stabilisation epoch (full, reduced)"}
    figure = "fig5"

    def judge(self, pairs: Mapping[float, tuple[Run, Run]]) -> Judgement:
        """C5 for the full and reduced models of one seed (``beta -> (full, reduced)``)."""
        betas = list(pairs)
        ratios, gaps = [], []
        for full, reduced in pairs.values():
            ratios.append(ratio(reduced.metrics["test_loss"][-1],
                                full.metrics["test_loss"][-1]))
            with np.errstate(invalid="ignore", divide="ignore"):
                gaps.append(float(np.max(np.abs(np.log10(reduced.metrics["train_loss"][1:])
                                                - np.log10(full.metrics["train_loss"][1:])))))
        checks = {"final test losses agree": bool(ratios) and all(
                      1 / FINAL_RATIO <= r <= FINAL_RATIO for r in ratios),
                  "training-loss curves agree": bool(gaps) and all(g <= CURVE_DECADES
                                                                   for g in gaps)}
        worst = max((abs(math.log(r)) for r in ratios if r > 0), default=math.nan)
        return self.judgement(
            f"for every beta in {betas}: reduced/full final test loss within "
            f"[{1 / FINAL_RATIO:.2f}, {FINAL_RATIO}] and the training losses (same batches) "
            f"within {CURVE_DECADES} decades at every epoch.",
            {"betas": betas, "final_test_loss_ratio": ratios,
             "max_log10_training_loss_gap": gaps},
            checks,
            {"worst final-loss ratio": math.exp(worst) if np.isfinite(worst) else None,
             "worst curve gap (decades)": max(gaps, default=None)})
