"""`tuneflow retrain`'s options, one per config field, generated from RetrainConfig so the CLI, the Prefect
form and the config never disagree about a setting's name, meaning or default."""

from __future__ import annotations

import argparse
import typing

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tuneflow.config import (
    DataSettings,
    DriveSettings,
    PromotionSettings,
    RetrainConfig,
    ServingSettings,
    StorageSettings,
    TrainingSettings,
)

# (config section, settings model); None is the top level of RetrainConfig.
CONFIG_SECTIONS: list[tuple[str | None, type[BaseModel]]] = [
    (None, RetrainConfig),
    ("data", DataSettings),
    ("training", TrainingSettings),
    ("drive", DriveSettings),
    ("promotion", PromotionSettings),
    ("storage", StorageSettings),
    ("serving", ServingSettings),
]
NESTED_FIELDS = {section for section, _ in CONFIG_SECTIONS if section}


def _option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _is_name_list(field: FieldInfo) -> bool:
    """A list of names (classes, exclude_classes): given on the command line comma-separated."""
    return list[str] in (field.annotation, *typing.get_args(field.annotation))


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per config field, help text and default taken from the field itself."""
    for section, model in CONFIG_SECTIONS:
        group = parser.add_argument_group(f"{section} settings" if section else "run settings")
        for name, field in model.model_fields.items():
            if section is None and name in NESTED_FIELDS:
                continue
            default = field.get_default(call_default_factory=True)
            if default is None:
                default = {"classes": "all", "exclude_classes": "none"}.get(name, "unset")
            if isinstance(default, list):
                default = ",".join(default)
            suffix = " (comma-separated)" if _is_name_list(field) else ""
            if field.annotation is bool:  # a switch: --force, not --force true; --no-reuse-prepared for one that is on
                group.add_argument(
                    _option_name(name if default is False else f"no_{name}"),
                    dest=f"{section}.{name}" if section else name, action="store_const", const=default is False,
                    help=field.description,
                )
                continue
            group.add_argument(
                _option_name(name),
                dest=f"{section}.{name}" if section else name,
                required=field.is_required(),
                metavar=name.upper(),
                help=f"{field.description}{suffix} Default: {default}." if not field.is_required() else field.description,
            )


def config_from_options(options: argparse.Namespace) -> RetrainConfig:
    """Collect the given options into the nested config shape and validate it."""
    values: dict = {section: {} for section in NESTED_FIELDS}
    sections = dict(CONFIG_SECTIONS)
    for key, value in vars(options).items():
        if value is None or key in {"command", "handler"}:
            continue
        if "." in key:
            section, name = key.split(".", 1)
            listed = _is_name_list(sections[section].model_fields[name])
            values[section][name] = [c for c in value.split(",") if c.strip()] if listed else value
        else:
            values[key] = value
    return RetrainConfig.model_validate(values)


def describe_validation_error(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"]) or "settings"
        lines.append(f"  {location}: {problem['msg'].removeprefix('Value error, ')}")
    return "invalid settings:\n" + "\n".join(lines)
