"""Analysis: the coupled matrix and Jacobian, spectra and stages, the rank-1 theory, gain space
and LQR, tracking probes, and what ``closedloop analyze`` and ``inspect`` report.

Analysis reads run files (and calls the pure core for rollouts and Jacobians); it never reaches
into a trainer.
"""
