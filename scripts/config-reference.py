"""Write docs/config.md, the reference of every config field, from the schema's models and
their docstrings: .venv/bin/python scripts/config-reference.py"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from closedloop.config import schema
from closedloop.core.agents import AGENTS

AGENT_KINDS = [(f"agent (kind: {kind})", cls.config_class)
               for kind, cls in AGENTS.builtin.items()]
AGENT_KINDS.append(("agent (a registered kind without a config class)",
                    schema.RegisteredAgentConfig))
"""Each built-in agent kind's own fields (those every kind has are under ``agent``)."""

SECTIONS = [("(top level)", schema.RunConfig), ("plant", schema.PlantConfig),
            ("agent", schema.AgentConfig), *AGENT_KINDS, ("agent.init.NAME", schema.InitSpec),
            ("task", schema.TaskConfig), ("loss", schema.LossConfig),
            ("training", schema.TrainingConfig), ("evaluation", schema.EvaluationConfig),
            ("recording", schema.RecordingConfig), ("perturbation", schema.PerturbationConfig)]
NESTED = {"plant", "agent", "task", "loss", "training", "evaluation", "recording",
          "perturbation"}
INTRO = """# Config files: every field

A config file is YAML with the sections below; `closedloop presets --show NAME` writes a
preset as one (every field), `closedloop train FILE.yaml` and `closedloop sweep FILE.yaml`
read one, and `--set section.field=value` overrides any field on the command line. Unknown
keys and ill-typed values are refused with the file, the key path and what is allowed; a
run file stores the resolved config, and `closedloop train --config-from RUN.h5` repeats the
run. The science behind each setting is in `docs/science.md`; plants, sensors and agents in
`docs/plants.md`. (This file is written by `scripts/config-reference.py`.)
"""


def field_type(annotation: object) -> str:
    text = str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    text = text.replace("closedloop.config.schema.SensorConfig", "{delay: int, noise_std: float}")
    return text.replace("|", "\\|")


def main() -> None:
    lines = [INTRO]
    for name, model in SECTIONS:
        text = inspect.cleandoc(model.__doc__ or "").split("\nExample\n-------")[0].strip()
        lines += [f"## `{name}`", "", text, "",
                  "| field | type | default |", "|---|---|---|"]
        for field, info in model.model_fields.items():
            if name == "(top level)" and field in NESTED:
                continue
            if name.startswith("agent (") and field in schema.AgentConfig.model_fields:
                continue
            default = "required" if info.is_required() else \
                f"`{json.dumps(info.get_default(call_default_factory=True))}`"
            lines.append(f"| `{field}` | {field_type(info.annotation)} | {default} |")
        lines.append("")
    Path(__file__).resolve().parents[1].joinpath("docs", "config.md").write_text(
        "\n".join(lines))


if __name__ == "__main__":
    main()
