"""`python -m gateway token`: mint a viewer token and print it with a console link.

HS256 with the configured `auth.secret` (TAILGATE_AUTH_SECRET), or RS256/ES256 with a
private key file (`--private-key`; the gateway holds only the matching public key).
Tokens carry `sub`, `iat`, `exp`, a random `jti` (it appears in the audit log) and
`streams`, the glob patterns the holder may open; `aud` and `iss` when given (`--aud`,
`--iss`) or configured (`auth.audience`, `auth.issuer`, which the gateway then requires).
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.access.grants import PATTERN_PREFIXES
from gateway.access.identity import MIN_SECRET_BYTES
from settings import ConfigError, Settings, load

TTL_RE = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL = 30 * 86400


def parse_ttl(text: str) -> float:
    """`90s`, `30m`, `8h`, `1d` or plain seconds."""
    match = TTL_RE.fullmatch(text.strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 30m, 8h, 1d)")
    return float(match.group(1)) * UNITS[match.group(2)]


def signing_key(private_key: str | None, settings: Settings) -> tuple[Any, str]:
    """(key, algorithm) to sign with: the private key file, else the HS256 secret."""
    if private_key:
        try:
            key = load_pem_private_key(Path(private_key).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"--private-key {private_key}: {exc}") from None
        if isinstance(key, rsa.RSAPrivateKey):
            return key, "RS256"
        if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
            return key, "ES256"
        raise ConfigError("--private-key must be an RSA key (RS256) or an EC P-256 key (ES256)")
    secret = settings.auth.secret
    if not secret:
        raise ConfigError("no auth.secret (TAILGATE_AUTH_SECRET) to sign with; or give --private-key")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"auth.secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret.encode(), "HS256"


def mint(
    key: Any,
    algorithm: str,
    sub: str,
    streams: list[str],
    ttl: float,
    now: float | None = None,
    audience: str = "",
    issuer: str = "",
) -> str:
    """A signed token for `sub` allowed `streams` for `ttl` seconds (with `aud`/`iss` when given)."""
    now = time.time() if now is None else now
    claims: dict[str, Any] = {
        "sub": sub,
        "streams": streams,
        "iat": int(now),
        "exp": int(now + ttl),
        "jti": secrets.token_hex(8),
    }
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, key, algorithm=algorithm)


def console_url(settings: Settings, base: str | None) -> str:
    if base:
        return base if base.endswith("/") else base + "/"
    host = settings.gateway.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.gateway.port}/"


def token_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway token",
        description="Mint a viewer token (JWT) and print it, then a console link that carries it.",
    )
    parser.add_argument("--sub", required=True, help="who the token is for (shown in the audit log)")
    parser.add_argument(
        "--allow",
        action="append",
        required=True,
        metavar="PATTERN",
        help="stream glob the holder may open, e.g. 'kafka:payments*' or 'file:web-*:/var/log/nginx/*' (repeatable)",
    )
    parser.add_argument("--ttl", default="8h", help="lifetime: 90s, 30m, 8h, 1d (default 8h, at most 30d)")
    parser.add_argument("--private-key", help="PEM private key (RSA: RS256, EC P-256: ES256); default: HS256 secret")
    parser.add_argument("--aud", help="the token's audience (aud); default auth.audience")
    parser.add_argument("--iss", help="the token's issuer (iss); default auth.issuer")
    parser.add_argument("--url", help="the console's public URL for the link (default from gateway.host/port)")
    parser.add_argument("--config", help="YAML config file (default: $TAILGATE_CONFIG or conf/tailgate.yaml)")
    args = parser.parse_args(argv)
    try:
        ttl = parse_ttl(args.ttl)
    except ValueError as exc:
        parser.error(str(exc))
    if ttl > MAX_TTL:
        parser.error("--ttl is limited to 30 days: prefer short-lived tokens")
    for pattern in args.allow:
        if not pattern.startswith(PATTERN_PREFIXES):
            parser.error(f"--allow {pattern!r} grants nothing: patterns start with 'kafka:', 'salt:' or 'file:'")
    if not args.sub.strip() or not args.sub.isprintable():
        parser.error("--sub must be a printable user name")
    try:
        settings = load(args.config)
        key, algorithm = signing_key(args.private_key, settings)
    except ConfigError as exc:
        print(f"gateway token: {exc}", file=sys.stderr)
        return 2
    now = time.time()
    audience = settings.auth.audience if args.aud is None else args.aud
    issuer = settings.auth.issuer if args.iss is None else args.iss
    token = mint(key, algorithm, args.sub, args.allow, ttl, now, audience, issuer)
    expires = datetime.fromtimestamp(int(now + ttl), UTC).isoformat()
    print(token)
    print(f"{console_url(settings, args.url)}?token={quote(token, safe='')}")
    print(f"{algorithm} token for {args.sub}, expires {expires}, allows {', '.join(args.allow)}", file=sys.stderr)
    return 0
