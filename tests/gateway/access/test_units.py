"""Access control without a process: token verification, stream grants, limits, safe binds, minting."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tornado.httputil import HTTPHeaders, HTTPServerRequest

from gateway.__main__ import check_bind
from gateway.access.audit import RedactTokens, redact
from gateway.access.grants import compile_grants
from gateway.access.hosts import HostPolicy, split_host
from gateway.access.identity import Authenticator, AuthError
from gateway.access.limits import ConnectionCounter, ControlLimiter
from settings import AuthSettings, ConfigError, Settings
from tests.support import ROOT, service_env
from wire import parse_stream

SECRET = "s3cret-" + "x" * 40
OTHER = "other-" + "y" * 40


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**over: object) -> dict[str, object]:
    base: dict[str, object] = {"sub": "alice", "exp": int(time.time()) + 600, "streams": ["kafka:a*"]}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def request(uri: str = "/ws", headers: dict[str, str] | None = None, peer: str = "127.0.0.1") -> HTTPServerRequest:
    req = HTTPServerRequest(method="GET", uri=uri, headers=HTTPHeaders(headers or {}))
    req.remote_ip = peer
    return req


def pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def keys() -> dict[str, object]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
        "rsa_other": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }


# Grants ------------------------------------------------------------------------------


@pytest.mark.unit
def test_a_kafka_glob_never_reaches_another_topic_or_any_file() -> None:
    grants = compile_grants(("kafka:a*",))
    assert grants.allows(parse_stream("kafka:a"))
    assert grants.allows(parse_stream("kafka:abc/eu"))
    assert not grants.allows(parse_stream("kafka:b"))
    assert not grants.allows(parse_stream("kafka:ba"))
    assert not grants.allows(parse_stream("file:a:/var/log/a"))
    # Patterns that do not name their kind grant nothing, so '*' never opens a file.
    loose = compile_grants(("*", "*a*", "k*", "?afka:*"))
    for name in ("kafka:a", "file:m:/var/log/syslog", "file:kafka:/x"):
        assert not loose.allows(parse_stream(name)), name
    assert not loose.may_see_minion("m")


@pytest.mark.unit
def test_file_globs_match_minion_and_path_separately() -> None:
    grants = compile_grants(("file:web-*:/var/log/nginx/*",))
    assert grants.allows(parse_stream("file:web-1:/var/log/nginx/access.log"))
    assert not grants.allows(parse_stream("file:db-1:/var/log/nginx/access.log"))
    assert not grants.allows(parse_stream("file:web-1:/var/log/auth.log"))
    # A '*' in the minion part cannot swallow the ':' and a path prefix.
    assert not grants.allows(parse_stream("file:web-1:/etc:/var/log/nginx/x"))
    assert not grants.allows(parse_stream("kafka:web-1"))
    assert grants.may_see_minion("web-7") and not grants.may_see_minion("db-1")
    every = compile_grants(("file:*",))
    assert every.allows(parse_stream("file:any:/var/log/x")) and not every.allows(parse_stream("kafka:x"))
    assert compile_grants(("FILE:*", "Kafka:*")).allows_name("kafka:x") is False  # case-sensitive
    assert compile_grants(("kafka:*",)).allows_name("kafka:bad topic") is False  # invalid names never


# Tokens ------------------------------------------------------------------------------


@pytest.mark.unit
def test_hs256_tokens_and_every_way_a_token_is_refused() -> None:
    auth = Authenticator(AuthSettings(secret=SECRET, leeway=0))
    good = jwt.encode(claims(jti="t1"), SECRET, algorithm="HS256")
    who = auth.verify(good)
    assert (who.user, who.streams, who.via, who.token_id) == ("alice", ("kafka:a*",), "token", "t1")

    refusals = {
        "expired": jwt.encode(claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256"),
        "wrong key": jwt.encode(claims(), OTHER, algorithm="HS256"),
        "no exp": jwt.encode(claims(exp=None), SECRET, algorithm="HS256"),
        "no sub": jwt.encode(claims(sub=None), SECRET, algorithm="HS256"),
        "no streams": jwt.encode(claims(streams=None), SECRET, algorithm="HS256"),
        "streams not a list": jwt.encode(claims(streams="kafka:*"), SECRET, algorithm="HS256"),
        "garbage": "not.a.token",
    }
    header, payload, sig = good.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["streams"] = ["kafka:*", "file:*"]
    refusals["tampered"] = f"{header}.{b64(json.dumps(forged).encode())}.{sig}"
    none_header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    refusals["alg none"] = f"{none_header}.{b64(json.dumps(claims()).encode())}."
    refusals["alg none, signed"] = refusals["alg none"] + sig
    refusals["HS512"] = jwt.encode(claims(), SECRET, algorithm="HS512")
    for what, token in refusals.items():
        with pytest.raises(AuthError):
            auth.verify(token)
            pytest.fail(f"{what} token accepted")
    with pytest.raises(AuthError, match="expired"):
        auth.verify(refusals["expired"])


@pytest.mark.unit
def test_secret_rotation_accepts_the_previous_secret_until_it_is_removed() -> None:
    old = jwt.encode(claims(), OTHER, algorithm="HS256")
    assert Authenticator(AuthSettings(secret=SECRET, previous_secret=OTHER)).verify(old).user == "alice"
    with pytest.raises(AuthError):
        Authenticator(AuthSettings(secret=SECRET)).verify(old)


@pytest.mark.unit
def test_public_keys_pin_rs256_and_es256_and_refuse_hmac_confusion(keys: dict, tmp_path: Path) -> None:
    pem = tmp_path / "keys.pem"
    pem.write_bytes(pem_public(keys["rsa"]) + pem_public(keys["ec"]))
    auth = Authenticator(AuthSettings(public_key=str(pem)))
    assert auth.algorithms == ["ES256", "RS256"]
    assert auth.verify(jwt.encode(claims(), keys["rsa"], algorithm="RS256")).user == "alice"
    assert auth.verify(jwt.encode(claims(sub="bob"), keys["ec"], algorithm="ES256")).user == "bob"
    with pytest.raises(AuthError):
        auth.verify(jwt.encode(claims(), keys["rsa_other"], algorithm="RS256"))
    # The classic confusion: HS256 "signed" with the public key's PEM as the secret.
    header = b64(b'{"alg":"HS256","typ":"JWT"}')
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(pem_public(keys["rsa"]), f"{header}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(AuthError, match="algorithm not accepted"):
        auth.verify(f"{header}.{body}.{b64(mac)}")
    # PEM text works as well as a file; algorithms that cannot go with a public key are refused.
    assert Authenticator(AuthSettings(public_key=pem_public(keys["ec"]).decode())).algorithms == ["ES256"]
    for bad in (
        AuthSettings(public_key=str(pem), algorithms=["RS256", "HS256"]),
        AuthSettings(public_key=str(pem), algorithms=["none"]),
        AuthSettings(public_key=pem_public(keys["ec"]).decode(), algorithms=["RS256"]),
        AuthSettings(public_key=str(tmp_path / "missing.pem")),
        AuthSettings(secret=SECRET, public_key=str(pem)),
        AuthSettings(secret="short"),
        AuthSettings(proxy_user_header="X-User"),
    ):
        with pytest.raises(ConfigError):
            Authenticator(bad)


@pytest.mark.unit
def test_token_sources_header_query_cookie_and_the_proxy_header() -> None:
    conf = AuthSettings(
        secret=SECRET,
        trusted_proxies=["10.1.0.0/16"],
        proxy_user_header="X-Remote-User",
        proxy_streams=["kafka:p*"],
    )
    auth = Authenticator(conf)
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert auth.authenticate(request(headers={"Authorization": f"Bearer {token}"})).user == "alice"
    assert auth.authenticate(request(f"/ws?token={token}")).user == "alice"
    assert auth.authenticate(request(headers={"Cookie": f"tailgate_token={token}"})).user == "alice"
    with pytest.raises(AuthError, match="Bearer"):
        auth.authenticate(request(headers={"Authorization": f"Basic {token}"}))
    with pytest.raises(AuthError, match="required"):
        auth.authenticate(request())
    # The header counts only from a trusted proxy; anyone else must bring a token.
    proxied = auth.authenticate(request(headers={"X-Remote-User": "carol"}, peer="10.1.2.3"))
    assert (proxied.user, proxied.via, proxied.streams) == ("carol", "proxy", ("kafka:p*",))
    with pytest.raises(AuthError):
        auth.authenticate(request(headers={"X-Remote-User": "carol"}, peer="10.2.0.1"))
    # Behind a trusted proxy, the client address is the one it forwarded.
    assert auth.client_address(request(headers={"X-Forwarded-For": "1.2.3.4, 5.6.7.8"}, peer="10.1.0.9")) == "5.6.7.8"
    assert auth.client_address(request(headers={"X-Forwarded-For": "5.6.7.8"}, peer="10.9.0.9")) == "10.9.0.9"


@pytest.mark.unit
def test_tokens_in_urls_are_redacted_from_logs(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tailgate-test-redaction")
    logger.addFilter(RedactTokens())
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("%d %s", 200, "GET /ws?x=1&token=eyJsecret.part.sig (127.0.0.1)")
        # Whatever the name decodes to the token parameter (as Tornado decodes it) is redacted.
        for name in ("%74oken", "T%4FKEN", "%2574oken", "to%6b%65n"):
            logger.info("%d %s", 401, f"GET /api/streams?{name}=eyJencoded.{name}.sig&keep=me (127.0.0.1)")
    assert "eyJsecret" not in caplog.text and "token=<redacted>" in caplog.text
    assert "eyJencoded" not in caplog.text and "?%74oken=<redacted>&keep=me (127.0.0.1)" in caplog.text
    assert redact("GET /?tokens=a&x=token=b&token2=c") == "GET /?tokens=a&x=token=b&token2=c"


# Limits ------------------------------------------------------------------------------


@pytest.mark.unit
def test_control_limiter_refuses_over_the_rate_then_calls_persistent_floods_abusive() -> None:
    limiter = ControlLimiter(rate=1.0, burst=5)
    verdicts = [limiter.admit() for _ in range(12)]
    assert verdicts[:5] == ["ok"] * 5
    assert verdicts[5:10] == ["limited"] * 5
    assert verdicts[10:] == ["abusive"] * 2


@pytest.mark.unit
def test_connection_counter_per_user_and_per_address() -> None:
    counter = ConnectionCounter(per_user=2, per_address=3)
    assert counter.acquire("a", "1.1.1.1") is None
    assert counter.acquire("a", "1.1.1.1") is None
    assert counter.acquire("a", "2.2.2.2") == "per_user"
    assert counter.acquire("b", "1.1.1.1") is None
    assert counter.acquire("c", "1.1.1.1") == "per_address"
    counter.release("a", "1.1.1.1")
    assert counter.acquire("c", "1.1.1.1") is None
    assert ConnectionCounter(0, 0).acquire("x", "y") is None


# Safe defaults -------------------------------------------------------------------------


@pytest.mark.unit
def test_without_auth_only_loopback_binds_unless_explicitly_insecure() -> None:
    settings = Settings()
    check_bind(settings)  # 127.0.0.1
    settings.gateway.host = "0.0.0.0"
    with pytest.raises(ConfigError, match="authentication is off"):
        check_bind(settings)
    settings.gateway.insecure_bind = True
    check_bind(settings)
    settings.gateway.insecure_bind = False
    settings.auth.secret = SECRET
    check_bind(settings)


@pytest.mark.unit
def test_host_names_answered_without_auth_are_loopback_and_the_listed_ones() -> None:
    assert [split_host(h) for h in ("LocalHost:8080", "[::1]:80", "[::1]", "::1", "logs.internal", "a:b")] == [
        ("localhost", "8080"), ("::1", "80"), ("::1", ""), ("::1", ""), ("logs.internal", ""), ("a:b", "")
    ]  # fmt: skip
    policy = HostPolicy(["logs.internal", "Console.Test:8443", "[fd00::5]:8080"])
    for host in ("localhost", "127.0.0.1:1", "127.9.9.9", "[::1]:8080", "logs.internal:1", "console.test:8443",
                 "[FD00::5]:8080"):  # fmt: skip
        assert policy.allows(host), host
    for host in ("rebind.example", "localhost.rebind.example", "console.test", "console.test:80", "[fd00::5]:80",
                 "10.0.0.5", "0.0.0.0", ""):  # fmt: skip
        assert not policy.allows(host), host
    for bad in ("http://logs.internal", "*.internal", "user@host", ":8080"):
        with pytest.raises(ConfigError, match="not a host name"):
            HostPolicy([bad])


def test_the_gateway_process_refuses_a_public_bind_and_a_bad_key_at_start(tmp_path: Path) -> None:
    env = service_env()
    run = [sys.executable, "-m", "gateway", "--host", "0.0.0.0", "--port", "1"]
    proc = subprocess.run(run, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "authentication is off" in proc.stderr
    bad = dict(env, TAILGATE_AUTH_SECRET="short")
    proc = subprocess.run(run[:3], env=bad, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "at least 32 bytes" in proc.stderr


# Minting ------------------------------------------------------------------------------


def test_token_command_mints_hs256_and_es256_tokens_with_a_console_link(keys: dict, tmp_path: Path) -> None:
    env = service_env(TAILGATE_AUTH_SECRET=SECRET, TAILGATE_GATEWAY_PORT="8123")
    cmd = [sys.executable, "-m", "gateway", "token", "--sub", "alice", "--allow", "kafka:*", "--ttl", "8h"]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
    token, link = out.stdout.split()
    assert link == f"http://127.0.0.1:8123/?token={token}"
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert decoded["sub"] == "alice" and decoded["streams"] == ["kafka:*"]
    assert 8 * 3600 - 5 <= decoded["exp"] - time.time() <= 8 * 3600
    key = tmp_path / "ec.pem"
    key.write_bytes(
        keys["ec"].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    out = subprocess.run(
        [*cmd[:-2], "--ttl", "30m", "--private-key", str(key), "--url", "https://logs.example"],
        env=service_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    token, link = out.stdout.split()
    assert link.startswith("https://logs.example/?token=")
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    pub = Authenticator(AuthSettings(public_key=pem_public(keys["ec"]).decode()))
    assert pub.verify(token).user == "alice"
    refused = subprocess.run([*cmd[:-4], "--allow", "*"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "grants nothing" in refused.stderr
