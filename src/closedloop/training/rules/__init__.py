"""Learning rules: how a batch becomes a loss and a gradient, one module each.

======================  =========================================  ==========================
``training.mode``       rule                                       module
======================  =========================================  ==========================
``closed``              backpropagation through the plant          :mod:`.closed`
``open_white_noise``    imitation of a teacher on white noise      :mod:`.white_noise`
``open_teacher_plant``  imitation along the teacher's episodes     :mod:`.teacher_plant`
``reinforce``           REINFORCE, the plant a black box           :mod:`.reinforce`
``es``                  evolution strategies, the same             :mod:`.evolution`
``black_box``           the one ``training.estimator`` names       (this module)
``node_perturbation``   node perturbation (Fiete and Seung, 2006)  :mod:`.node_perturbation`
======================  =========================================  ==========================

:class:`~closedloop.training.rules.base.LearningRule` says what a rule writes and what it gets;
:func:`register_rule` (or an entry point in the group ``closedloop.rules``) adds one.

Example
-------
>>> sorted(RULES.builtin)[:3]
['black_box', 'closed', 'es']
"""

from __future__ import annotations

from closedloop.config import RunConfig
from closedloop.training.rules.base import RULES, LearningRule, register_rule, rule_for
from closedloop.training.rules.closed import ClosedLoop
from closedloop.training.rules.evolution import EvolutionStrategies
from closedloop.training.rules.node_perturbation import NodePerturbation
from closedloop.training.rules.reinforce import Reinforce
from closedloop.training.rules.teacher_plant import TeacherDrivenImitation
from closedloop.training.rules.white_noise import WhiteNoiseImitation


def black_box(config: RunConfig) -> LearningRule:
    """``training.mode: black_box``: the rule ``training.estimator`` names (``reinforce`` or
    ``es``), as configs have said since before the rules had names of their own.

    Example
    -------
    >>> from closedloop.config import load_preset
    >>> type(black_box(load_preset("di-tanh-es"))).__name__
    'EvolutionStrategies'
    """
    return RULES.get(config.training.estimator)(config)


RULES.builtin.update({
    "black_box": black_box,
    "closed": ClosedLoop,
    "open_white_noise": WhiteNoiseImitation,
    "open_teacher_plant": TeacherDrivenImitation,
    "reinforce": Reinforce,
    "es": EvolutionStrategies,
    "node_perturbation": NodePerturbation,
})

__all__ = ["RULES", "LearningRule", "black_box", "register_rule", "rule_for"]
