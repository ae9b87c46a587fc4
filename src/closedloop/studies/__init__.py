"""Experiments built on the training and analysis layers, above the infrastructure that runs
many networks (:mod:`closedloop.scale`):

* :mod:`closedloop.studies.stages`: the training studies behind the paper's stage analyses
  (prescribed initial overlaps, episode lengths, the reduced model against the full network;
  science 4, 7), used by the figures of ``closedloop reproduce``;
* :mod:`closedloop.studies.loops`: studies of loops beyond the paper, one command each
  (``closedloop study NAME``; docs/loops.md has their results).
"""
