"""Where the gateway is and which token to show it: flags, then `TAILGATE_URL` /
`TAILGATE_TOKEN`, then a config file, then `http://127.0.0.1:8080/` and no token.

The config file is TOML, by default `$XDG_CONFIG_HOME/tailgate/config.toml`
(`~/.config/tailgate/config.toml`), another with `--config`::

    url = "https://tailgate.example.com/"
    token_file = "~/.config/tailgate/token"    # or: token = "eyJ..."

The token travels as ``Authorization: Bearer`` (never in a URL, where logs keep it).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tailgate.errors import CliError, Exit

DEFAULT_URL = "http://127.0.0.1:8080/"
KEYS = {"url", "token", "token_file"}


@dataclass(frozen=True, slots=True)
class Target:
    """A gateway: its base URL (ending in /) and the token to send, if any."""

    url: str
    token: str | None

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc, parts.path + "ws", "", ""))

    def api_url(self, path: str) -> str:
        return self.url + path.lstrip("/")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def default_config(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".config")
    return Path(base) / "tailgate" / "config.toml"


def _read(path: Path, given: bool) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if given:
            raise CliError(Exit.USAGE, f"config file {path} not found") from None
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CliError(Exit.USAGE, f"config file {path}: {exc}") from None
    unknown = set(data) - KEYS
    if unknown:
        raise CliError(Exit.USAGE, f"config file {path}: unknown keys {sorted(unknown)} (known: {sorted(KEYS)})")
    if not all(isinstance(v, str) for v in data.values()):
        raise CliError(Exit.USAGE, f"config file {path}: url, token and token_file are strings")
    if "token_file" in data:
        token_path = Path(os.path.expanduser(data["token_file"]))
        try:
            data["token"] = token_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(Exit.USAGE, f"config file {path}: token_file {token_path}: {exc.strerror}") from None
    return data


def normal_url(url: str) -> str:
    """`url` as a gateway base URL (http or https, ending in /), or a usage error."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(Exit.USAGE, f"gateway URL must be http(s)://host[:port][/path]: {url!r}")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def resolve(url: str | None, token: str | None, config: str | None, env: Mapping[str, str]) -> Target:
    """The gateway to use, from the flags, the environment and the config file, in that order."""
    path = Path(os.path.expanduser(config)) if config else default_config(env)
    file = _read(path, given=config is not None)
    chosen_url = url or env.get("TAILGATE_URL") or file.get("url") or DEFAULT_URL
    chosen_token = token or env.get("TAILGATE_TOKEN") or file.get("token") or None
    return Target(normal_url(chosen_url), chosen_token)
