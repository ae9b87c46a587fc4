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
    AgentConfig,
    EvaluationConfig,
    InitSpec,
    LossConfig,
    PlantConfig,
    RecordingConfig,
    RegisteredAgentConfig,
    RunConfig,
    TaskConfig,
    TrainingConfig,
    agent_config,
    agent_config_class,
    plant_matrices,
    stored_agent_fields,
)

__all__ = ["AgentConfig", "EvaluationConfig", "InitSpec", "LossConfig", "PlantConfig",
           "RecordingConfig", "RegisteredAgentConfig", "RunConfig", "TaskConfig",
           "TrainingConfig", "agent_config", "agent_config_class", "apply_overrides",
           "build_config", "config_difference", "config_from_json", "is_config_file",
           "load_preset", "parse_override", "plant_matrices", "preset_dict", "preset_names",
           "preset_yaml", "resolve_config", "stored_agent_fields"]
