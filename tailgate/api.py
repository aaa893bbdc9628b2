"""The gateway's JSON API (`/api/streams`, `/api/minions`, `/api/minions/<id>/files`)
for `tailgate streams`, `minions` and `files`, with the contract's error bodies turned
into the command's exit statuses."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from tailgate.config import Target
from tailgate.errors import BY_STATUS, CliError, Exit

TIMEOUT = 30.0


def get(target: Target, path: str) -> dict[str, Any]:
    """GET an API document, or `CliError` saying why not."""
    request = urllib.request.Request(target.api_url(path), headers={"Accept": "application/json", **target.headers})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
            detail = f"{body.get('error')}: {body.get('message')}"
        except (ValueError, AttributeError):
            detail = exc.reason
        raise CliError(BY_STATUS.get(exc.code, Exit.FAILED), f"HTTP {exc.code} from {target.url}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(Exit.UNREACHABLE, f"cannot reach the gateway at {target.url}: {reason}") from None
    except ValueError:
        raise CliError(Exit.FAILED, f"{target.api_url(path)} did not answer with JSON") from None


def streams(target: Target) -> list[dict[str, Any]]:
    return get(target, "api/streams").get("streams", [])


def minions(target: Target) -> dict[str, Any]:
    return get(target, "api/minions")


def files(target: Target, minion: str) -> dict[str, Any]:
    return get(target, f"api/minions/{quote(minion, safe='')}/files")
