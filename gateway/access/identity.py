"""Who is asking: signed tokens (JWT) and the trusted reverse-proxy header, turned into an `Identity`.

A token is accepted only if PyJWT verifies it with a key the gateway holds and one of the
algorithms pinned here: HS256 when `auth.secret` is set, the asymmetric algorithms of
`auth.algorithms` that fit the key type when `auth.public_key` is (never HS256 then, so a
public key can never be used as an HMAC secret; never ``none``). It must carry `sub`,
`exp` and `streams` (a list of stream-name globs, see `gateway.access.grants`), and,
when `auth.audience` or `auth.issuer` is set, a matching `aud` or `iss`.

A token travels as ``Authorization: Bearer``, as the ``token`` query parameter (browsers
cannot set headers on a WebSocket) or in the cookie `auth.cookie_name` that the gateway
sets when the console is opened with ``?token=``. A user name header
(`auth.proxy_user_header`) is believed only from `auth.trusted_proxies`.
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from tornado.httputil import HTTPServerRequest

from settings import AuthSettings, ConfigError

MIN_SECRET_BYTES = 32
MAX_TOKEN_CHARS = 16_384
MAX_PATTERNS = 1_000
MAX_PATTERN_CHARS = 5_000
MAX_SUB_CHARS = 256
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)
TOKEN_PARAMETER = "token"
TOKEN_PARAMETERS = frozenset({TOKEN_PARAMETER})  # every query parameter a token is read from (redacted in logs)


class AuthError(Exception):
    """A request that cannot be authenticated; the message says why (safe to show)."""


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller: who, which stream globs, until when, and how we know."""

    user: str
    streams: tuple[str, ...]
    via: str  # "token", "proxy" or "none" (authentication off)
    expires: float | None = None  # epoch seconds after which the connection must end
    token_id: str = ""  # the token's `jti`, for the audit log
    unrestricted: bool = field(default=False, compare=False)  # authentication off: every stream


ANONYMOUS = Identity(user="anonymous", streams=(), via="none", unrestricted=True)


@dataclass(frozen=True, slots=True)
class _Verifier:
    keys: tuple[Any, ...]
    algorithms: tuple[str, ...]


def load_public_keys(value: str) -> list[Any]:
    """The public keys in a PEM file (or PEM text), one or more (rotation: old and new)."""
    data = value.encode() if value.lstrip().startswith("-----BEGIN") else _read(value)
    blocks = PEM_BLOCK.findall(data)
    if not blocks:
        raise ConfigError(f"auth.public_key: no '-----BEGIN PUBLIC KEY-----' block in {value[:80]!r}")
    keys = []
    for block in blocks:
        try:
            keys.append(load_pem_public_key(block))
        except ValueError as exc:
            raise ConfigError(f"auth.public_key: not a usable public key: {exc}") from None
    return keys


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"auth.public_key: cannot read {path}: {exc.strerror}") from None


def key_algorithms(key: Any, allowed: list[str]) -> list[str]:
    """The algorithms of `allowed` that verify with `key` (RSA: RS*/PS*, EC: ES* of its curve)."""
    if isinstance(key, rsa.RSAPublicKey):
        return [a for a in allowed if a in RSA_ALGORITHMS]
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = EC_ALGORITHMS.get(key.curve.name)
        return [alg] if alg in allowed else []
    return []


class Authenticator:
    """Verifies tokens and proxy headers against the configured keys; pure, no I/O per call."""

    def __init__(self, conf: AuthSettings) -> None:
        self.conf = conf
        self.enabled = conf.enabled
        self.verifiers: list[_Verifier] = []
        if conf.secret and conf.public_key:
            raise ConfigError("auth: set either secret (HS256) or public_key (RS256/ES256), not both")
        if conf.secret:
            secrets = [s for s in (conf.secret, conf.previous_secret) if s]
            for s in secrets:
                if len(s.encode()) < MIN_SECRET_BYTES:
                    raise ConfigError(
                        f"auth.secret: at least {MIN_SECRET_BYTES} bytes; make one with "
                        "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
                    )
            self.verifiers.append(_Verifier(tuple(s.encode() for s in secrets), ("HS256",)))
        elif conf.public_key:
            bad = [a for a in conf.algorithms if a not in RSA_ALGORITHMS and a not in EC_ALGORITHMS.values()]
            if bad:
                raise ConfigError(f"auth.algorithms: only RS*/PS*/ES* go with a public key, not {bad}")
            for key in load_public_keys(conf.public_key):
                algs = key_algorithms(key, conf.algorithms)
                if not algs:
                    raise ConfigError(f"auth.public_key: a {type(key).__name__} fits none of {conf.algorithms}")
                self.verifiers.append(_Verifier((key,), tuple(algs)))
        self.algorithms = sorted({a for v in self.verifiers for a in v.algorithms})
        # `aud` and `iss` are checked only when configured, and then must be present.
        self.required = ["sub", "exp"] + ["aud"] * bool(conf.audience) + ["iss"] * bool(conf.issuer)
        self.proxies = [_network(p) for p in conf.trusted_proxies]
        if conf.proxy_user_header and not self.proxies:
            raise ConfigError("auth.proxy_user_header needs auth.trusted_proxies (the proxies' addresses)")

    # Where the caller is --------------------------------------------------------------

    def from_proxy(self, peer: str) -> bool:
        """True when the TCP peer is one of `auth.trusted_proxies`."""
        try:
            addr = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(addr in net for net in self.proxies)

    def client_address(self, request: HTTPServerRequest) -> str:
        """The caller's address: the TCP peer, or for a trusted proxy the address it forwarded."""
        peer = request.remote_ip or ""
        if self.from_proxy(peer):
            forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
            try:
                return str(ipaddress.ip_address(forwarded))
            except ValueError:
                return peer
        return peer

    # Who the caller is ----------------------------------------------------------------

    def authenticate(self, request: HTTPServerRequest) -> Identity:
        """The caller of `request`, or `AuthError` saying why not."""
        if not self.enabled:
            return ANONYMOUS
        header = self.conf.proxy_user_header
        if header and self.from_proxy(request.remote_ip or ""):
            user = request.headers.get(header, "").strip()
            if user:
                if len(user) > MAX_SUB_CHARS or not user.isprintable():
                    raise AuthError(f"the {header} header from the proxy is not a usable user name")
                return Identity(user=user, streams=tuple(self.conf.proxy_streams), via="proxy")
        token = self.token_of(request)
        if token is None:
            raise AuthError("authentication required: send a token (Authorization: Bearer, ?token= or cookie)")
        return self.verify(token)

    def token_of(self, request: HTTPServerRequest) -> str | None:
        """The token a request carries: Authorization header, then ?token=, then the cookie."""
        auth = request.headers.get("Authorization")
        if auth is not None:
            scheme, _, value = auth.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthError("the Authorization header must be 'Bearer <token>'")
            return value.strip()
        values = request.query_arguments.get(TOKEN_PARAMETER)
        if values:
            return values[-1].decode("utf-8", "replace")
        cookie = request.cookies.get(self.conf.cookie_name)
        if cookie is not None and cookie.value:
            return cookie.value
        return None

    def verify(self, token: str) -> Identity:
        """Verify a JWT with the pinned keys and algorithms; raise `AuthError` on any flaw."""
        if not self.verifiers:
            raise AuthError("this gateway accepts no tokens (proxy authentication only)")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError("token too long")
        claims: dict[str, Any] | None = None
        failure = "token signature does not verify"
        for verifier in self.verifiers:
            for key in verifier.keys:
                try:
                    claims = jwt.decode(
                        token,
                        key,
                        algorithms=list(verifier.algorithms),
                        options={"require": self.required, "verify_aud": bool(self.conf.audience)},
                        audience=self.conf.audience or None,
                        issuer=self.conf.issuer or None,
                        leeway=self.conf.leeway,
                    )
                except jwt.InvalidSignatureError:
                    continue  # another configured key (rotation) may verify it
                except jwt.ExpiredSignatureError:
                    raise AuthError("token expired") from None
                except jwt.InvalidAlgorithmError:
                    failure = f"token algorithm not accepted here (accepted: {', '.join(self.algorithms)})"
                    continue
                except jwt.InvalidAudienceError:
                    raise AuthError(f"token audience (aud) is not {self.conf.audience!r}") from None
                except jwt.InvalidIssuerError:
                    raise AuthError(f"token issuer (iss) is not {self.conf.issuer!r}") from None
                except jwt.InvalidTokenError as exc:
                    raise AuthError(f"invalid token: {exc}") from None
                break
            if claims is not None:
                break
        if claims is None:
            raise AuthError(failure)
        return _identity(claims, self.conf.leeway)


def _identity(claims: dict[str, Any], leeway: float) -> Identity:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_CHARS or not sub.isprintable():
        raise AuthError("token 'sub' must be a printable user name")
    streams = claims.get("streams")
    if not isinstance(streams, list) or not all(
        isinstance(p, str) and 0 < len(p) <= MAX_PATTERN_CHARS for p in streams
    ):
        raise AuthError("token 'streams' must be a list of stream-name patterns")
    if len(streams) > MAX_PATTERNS:
        raise AuthError(f"token 'streams' holds more than {MAX_PATTERNS} patterns")
    jti = claims.get("jti")
    expires = float(claims["exp"]) + leeway
    if expires <= time.time():
        raise AuthError("token expired")
    return Identity(
        user=sub,
        streams=tuple(streams),
        via="token",
        expires=expires,
        token_id=jti[:64] if isinstance(jti, str) else "",
    )


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ConfigError(f"auth.trusted_proxies: not an address or network: {value!r}") from None
