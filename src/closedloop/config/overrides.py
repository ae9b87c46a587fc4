"""Presets and overrides: where a :class:`~closedloop.config.schema.RunConfig` comes from.

Presets are YAML files in ``closedloop/config/presets``; every paper setting of the science
(docs/science.md) is one of them. Wherever a preset name is accepted, so is the path of a YAML
file of the same schema (a complete config: :func:`preset_yaml` writes a preset as one), and
errors in it are reported with the file's name. Overrides address fields by dotted path
(``training.lr=1e-3``, ``agent.init.W.gain=0.2``); values are parsed as YAML scalars or lists.
Anything invalid raises :class:`~closedloop.errors.ConfigError` with a message that names the
key, the value and what is allowed.

Example
-------
>>> config = load_preset("di-tanh-closed", overrides=["training.epochs=5"], seed=3)
>>> config.training.epochs, config.seed, config.agent.size
(5, 3, 100)
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from closedloop.config.schema import (
    AgentConfig,
    InitSpec,
    RunConfig,
    agent_config_class,
    stored_agent_fields,
)
from closedloop.errors import ConfigError


def preset_names() -> list[str]:
    """Names of the presets shipped with closedloop, sorted.

    Example
    -------
    >>> "di-tanh-closed" in preset_names()
    True
    """
    folder = resources.files("closedloop.config") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def is_config_file(source: str) -> bool:
    """Whether ``source`` names a config file (``.yaml``/``.yml``, or an existing file) rather
    than a shipped preset.

    Example
    -------
    >>> is_config_file("mine.yaml"), is_config_file("di-tanh-closed")
    (True, False)
    """
    return source.endswith((".yaml", ".yml")) or Path(source).is_file()


def preset_dict(name: str) -> dict[str, Any]:
    """The raw YAML mapping of preset ``name``, or of the config file at path ``name`` (its
    ``preset`` defaults to the file's stem); raises ConfigError for an unknown name or a file
    that cannot be read.

    Example
    -------
    >>> preset_dict("di-tanh-closed")["preset"]
    'di-tanh-closed'
    """
    if is_config_file(name):
        return _file_dict(Path(name))
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset '{name}' (available: {', '.join(names)}; or the "
                          "path of a .yaml config file)")
    text = (resources.files("closedloop.config") / "presets" / f"{name}.yaml").read_text()
    data = yaml.safe_load(text)
    data.setdefault("preset", name)
    return data


def _file_dict(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it as a text file ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"{path}: not valid YAML{where} ({problem})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file holds a mapping of sections (plant:, agent:, "
                          "task:, ...), not a YAML list or scalar")
    data.setdefault("preset", path.stem)
    return data


SHOWN_OMITTED = ("preset", "teacher", "init_from")
"""Fields :func:`preset_yaml` leaves out: the name (a file's is its stem) and where a run's
teacher and initial weights came from, which the command line gives (``--teacher``,
``--init-from``)."""


def preset_yaml(name: str, plant: dict[str, Any] | None = None) -> str:
    """Preset (or config file) ``name`` resolved, every field written out, as a YAML config
    file that ``closedloop train FILE.yaml`` reads back to the same config. ``plant``
    replaces the ``plant:`` section (the command line writes the plant's own constants
    there).

    Example
    -------
    >>> data = yaml.safe_load(preset_yaml("di-tanh-closed"))
    >>> build_config({**data, "preset": "di-tanh-closed"}) == load_preset("di-tanh-closed")
    True
    """
    data = load_preset(name).model_dump(mode="json")
    common = ("learned_std", "init", "trainable")       # after the kind's own fields
    data["agent"] = {**{k: v for k, v in data["agent"].items() if k not in common},
                     **{k: data["agent"][k] for k in common}}
    if plant is not None:
        data["plant"] = plant
    for key in SHOWN_OMITTED:
        data.pop(key)
    header = (f"# closedloop config: preset {name}, every field written out.\n"
              "# Edit it and run: closedloop train THIS.yaml (docs/config.md lists the fields)\n")
    return header + yaml.dump(data, Dumper=_ConfigDumper, sort_keys=False, width=96)


class _ConfigDumper(yaml.SafeDumper):
    """Sections as blocks; lists (matrices, frequencies) and small mappings of plain values
    (an ``init`` entry) on one line each."""


def _represent_mapping(dumper: yaml.SafeDumper, value: dict[str, Any]) -> yaml.Node:
    small = len(value) <= 4 and all(not isinstance(v, (dict, list)) for v in value.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=small or None)


_ConfigDumper.add_representer(dict, _represent_mapping)

_ConfigDumper.add_representer(
    list, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:seq", value,
                                                          flow_style=True))


NULL_SPELLINGS = ("", "null", "Null", "NULL", "~")
"""Values of ``--set key=value`` that mean null (YAML's spellings; an empty value too)."""


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``key.path=value`` into the key path and the YAML-parsed value.

    Example
    -------
    >>> parse_override("training.lr=1e-3")
    (['training', 'lr'], 0.001)
    """
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if value is None and raw.strip() not in NULL_SPELLINGS:
        value = raw             # '#...' is a YAML comment, not null: refused as the text it is
    if isinstance(value, str):
        value = _parse_number(value)
    return key.split("."), value


def _parse_number(text: str) -> Any:
    """YAML 1.1 reads '1e-3' as a string; accept plain float spellings as numbers."""
    try:
        return float(text) if any(c.isdigit() for c in text) else text
    except ValueError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides to a nested mapping (a copy is returned)."""
    result = json.loads(json.dumps(data))
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for i, part in enumerate(path[:-1]):
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = {}
                if isinstance(node, dict):
                    node[part] = child
            if not isinstance(child, dict):
                raise ConfigError(f"unknown key '{'.'.join(path)}': "
                                  f"'{'.'.join(path[: i + 1])}' is not a section")
            node = child
        node[path[-1]] = value
    return result


def build_config(data: dict[str, Any]) -> RunConfig:
    """Validate a mapping into a :class:`RunConfig`, turning errors into one clear line (the
    ``agent`` section by its kind's config class).

    Example
    -------
    >>> build_config({"agent": {"kind": "mlp", "size": 4}})
    Traceback (most recent call last):
    ...
    closedloop.errors.ConfigError: unknown key 'agent.size' (allowed: kind, learned_std, init, \
trainable, hidden_sizes, activation, bias, output_bias)
    """
    agent = data.get("agent")
    if isinstance(agent, dict) and isinstance(agent.get("kind", "rnn"), str):
        model = agent_config_class(agent.get("kind", "rnn"))
        try:
            data = {**data, "agent": model.model_validate(agent)}
        except ValidationError as exc:
            raise ConfigError(_describe(exc, model, ["agent"])) from None
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, RunConfig)) from None


def load_preset(name: str, overrides: list[str] | None = None, seed: int | None = None,
                epochs: int | None = None) -> RunConfig:
    """Resolve preset (or config file) ``name`` with overrides (and the CLI's
    ``--seed``/``--epochs``). Errors in a file name the file.

    Example
    -------
    >>> load_preset("di-lowrank-closed").agent.kind
    'lowrank'
    """
    return resolve_config(preset_dict(name), overrides, seed, epochs,
                          source=name if is_config_file(name) else None)


def resolve_config(data: dict[str, Any], overrides: list[str] | None = None,
                   seed: int | None = None, epochs: int | None = None,
                   source: str | None = None) -> RunConfig:
    """A config mapping (a preset's, a file's, a run file's) with overrides, ``--seed`` and
    ``--epochs`` applied, validated; errors are prefixed with ``source`` when given.

    Example
    -------
    >>> resolve_config(preset_dict("di-tanh-closed"), ["agent.size=8"], seed=2).agent.size
    8
    """
    for text in overrides or []:
        key = text.split("=", 1)[0].strip()
        if (key == "seed" and seed is not None) or (key == "training.epochs"
                                                    and epochs is not None):
            option = "--seed/--seeds" if key == "seed" else "--epochs"
            raise ConfigError(f"'{key}' is set by {option}; do not also --set it")
    data = _agent_kind_switched(data, apply_overrides(data, overrides or []), overrides or [])
    if seed is not None:
        data["seed"] = seed
    if epochs is not None:
        data.setdefault("training", {})["epochs"] = epochs
    try:
        return build_config(data)
    except ConfigError as exc:
        if source is None:
            raise
        raise ConfigError(f"{source}: {exc}") from None


def _agent_kind_switched(before: dict[str, Any], after: dict[str, Any], overrides: list[str]
                         ) -> dict[str, Any]:
    """Where ``--set agent.kind=...`` names another kind than the preset's, the preset's agent
    fields the new kind does not have are dropped (fields set by overrides are kept, and
    refused if the kind has no such field)."""
    old, new = (part.get("agent") for part in (before, after))
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return after
    kind = new.get("kind", "rnn")
    if kind == old.get("kind", "rnn") or not isinstance(kind, str):
        return after
    fields = agent_config_class(kind).model_fields
    overridden = {path[1] for path in (parse_override(text)[0] for text in overrides)
                  if len(path) > 1 and path[0] == "agent"}
    return {**after, "agent": {key: value for key, value in new.items()
                               if key in fields or key in overridden}}


def config_from_json(text: str) -> RunConfig:
    """Parse a config stored by :meth:`RunConfig.to_json`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"stored config is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError("stored config is not a JSON object")
    if isinstance(data.get("agent"), dict):
        data["agent"] = stored_agent_fields(data["agent"])
    return build_config(data)


def _describe(exc: ValidationError, model: type[BaseModel], prefix: list[str] | None = None
              ) -> str:
    """One line for the first error of validating ``model`` at dotted path ``prefix``."""
    error = exc.errors()[0]
    loc = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "literal["))]
    key = ".".join([*(prefix or []), *loc])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent is not None else ""
        return f"unknown key '{key}'" + (f" (allowed: {allowed})" if allowed else "")
    if not key:
        return f"invalid config: {message}"
    value = error.get("input")
    shown = json.dumps(value) if not isinstance(value, dict) else "{...}"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"invalid value for '{key}': {shown} ({message})"


def _model_at(model: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    """The config model at a dotted path below ``model`` (``init.W`` of an agent's config is
    an :class:`InitSpec`)."""
    parts = list(path)
    while parts:
        part = parts.pop(0)
        if issubclass(model, AgentConfig) and part == "init":
            if not parts:
                return None
            parts.pop(0)
            model = InitSpec
            continue
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def config_difference(a: RunConfig, b: RunConfig) -> list[str]:
    """Dotted keys whose values differ between two configs.

    Example
    -------
    >>> config_difference(load_preset("di-tanh-closed"), load_preset("di-tanh-closed", seed=2))
    ['seed']
    """
    flat_a, flat_b = _flatten(a.model_dump(mode="json")), _flatten(b.model_dump(mode="json"))
    return sorted(k for k in set(flat_a) | set(flat_b) if flat_a.get(k) != flat_b.get(k))


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
    return out
