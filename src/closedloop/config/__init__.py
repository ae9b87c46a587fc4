"""Configuration: the typed schema of a run, the shipped presets and ``--set`` overrides.

Example
-------
>>> from closedloop.config import load_preset
>>> load_preset("di-lowrank-closed").agent.kind
'lowrank'
"""

from closedloop.config.overrides import (
    apply_overrides,
    build_config,
    config_difference,
    config_from_json,
    is_config_file,
    load_preset,
    parse_override,
    preset_dict,
    preset_names,
    preset_yaml,
    resolve_config,
)
from closedloop.config.schema import (
    PARAMETER_NAMES,
    AgentConfig,
    EvaluationConfig,
    InitSpec,
    LossConfig,
    PlantConfig,
    RecordingConfig,
    RunConfig,
    TaskConfig,
    TrainingConfig,
    plant_matrices,
)

__all__ = ["PARAMETER_NAMES", "AgentConfig", "EvaluationConfig", "InitSpec", "LossConfig",
           "PlantConfig", "RecordingConfig", "RunConfig", "TaskConfig", "TrainingConfig",
           "apply_overrides", "build_config", "config_difference", "config_from_json",
           "is_config_file", "load_preset", "parse_override", "plant_matrices", "preset_dict",
           "preset_names", "preset_yaml", "resolve_config"]
