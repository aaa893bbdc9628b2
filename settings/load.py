"""Loading: defaults, then the YAML file, then environment variables; strictly typed.

Unknown keys and ill-typed values are errors that name the offending setting, so a typo
in a config file fails the start instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from settings.model import Settings

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "conf" / "tailgate.yaml"
ENV_ALIASES = {"TAILGATE_ALLOWED_ORIGINS": ("auth", "allowed_origins")}


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the setting."""


def _coerce(where: str, kind: Any, value: Any) -> Any:
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping")
        return _build(kind, value, where)
    if origin is list:
        (item,) = typing.get_args(kind)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list")
        return [_coerce(f"{where}[{i}]", item, v) for i, v in enumerate(value)]
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if kind is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string")
        return str(value)
    raise ConfigError(f"{where}: unsupported type {kind!r}")


def _build(cls: Any, data: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown setting(s) {', '.join(sorted(map(str, unknown)))}")
    values = {name: _coerce(f"{where}.{name}".lstrip("."), hints[name], value) for name, value in data.items()}
    return cls(**values)


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for section in dataclasses.fields(Settings):
        hints = typing.get_type_hints(typing.get_type_hints(Settings)[section.name])
        for name, kind in hints.items():
            if dataclasses.is_dataclass(typing.get_args(kind)[0] if typing.get_args(kind) else kind):
                continue  # structured settings (routes) come from YAML only
            var = f"TAILGATE_{section.name}_{name}".upper()
            if var in env:
                out.setdefault(section.name, {})[name] = env[var]
    for var, (section, name) in ENV_ALIASES.items():
        if var in env:
            out.setdefault(section, {})[name] = env[var]
    return out


def load(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings for this process from the file and the environment."""
    env = os.environ if env is None else env
    path = Path(path or env.get("TAILGATE_CONFIG") or DEFAULT_CONFIG)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        data = loaded
    elif env.get("TAILGATE_CONFIG") or path != DEFAULT_CONFIG:
        raise ConfigError(f"{path}: config file not found")
    for section, values in _env_overrides(env).items():
        merged = dict(data.get(section) or {})
        merged.update(values)
        data[section] = merged
    return _build(Settings, data, "")
