"""Tokens at the edge, through real gateway processes: a token given under a
percent-encoded parameter name never reaches the logs, and `auth.audience`/`auth.issuer`
make the gateway refuse tokens minted for another service or by another issuer."""

from __future__ import annotations

import json
import subprocess
import sys

import jwt

from tests.support import AUTH_ENV, ROOT, SECRET, WsClient, http, service_env, token

AUDIENCE, ISSUER = "tailgate-prod", "https://idp.example"


async def test_a_percent_encoded_token_parameter_works_and_never_reaches_the_logs(start_gateway) -> None:
    gw = start_gateway(**AUTH_ENV)
    good, expired = token(), token(ttl=-30)
    for name in ("%74oken", "t%6Fken", "%74%6f%6b%65%6e"):
        assert http(f"{gw.base}/api/streams?{name}={good}")[0] == 200, name
    assert http(f"{gw.base}/api/streams?a=1&%74oken={expired}")[0] == 401
    client = await WsClient.connect(f"{gw.ws_url}?%74oken={good}")
    await client.send({"op": "ping"})
    await client.wait_for(lambda: client.of_type("pong"), what="pong")
    await client.close()

    def logged() -> str:
        return gw.output()

    await client.wait_for(lambda: "GET /ws?%74oken=<redacted>" in logged(), what="the handshake's access log line")
    out = logged()
    assert "GET /api/streams?t%6Fken=<redacted>" in out and "?a=1&%74oken=<redacted>" in out
    assert good.split(".")[2] not in out and expired.split(".")[2] not in out


def status_of(gw_base: str, tok: str) -> tuple[int, str]:
    status, _, body = http(gw_base + "/api/streams", {"Authorization": f"Bearer {tok}"})
    return status, json.loads(body).get("message", "")


def test_audience_and_issuer_when_configured_are_required_and_minted(start_gateway) -> None:
    settings = {"TAILGATE_AUTH_AUDIENCE": AUDIENCE, "TAILGATE_AUTH_ISSUER": ISSUER}
    gw = start_gateway(**AUTH_ENV, **settings)
    assert status_of(gw.base, token(aud=AUDIENCE, iss=ISSUER)) == (200, "")
    assert status_of(gw.base, token(aud=["tailgate-dev", AUDIENCE], iss=ISSUER))[0] == 200
    refused = {
        "no aud": (token(iss=ISSUER), 'Token is missing the "aud" claim'),
        "no iss": (token(aud=AUDIENCE), 'Token is missing the "iss" claim'),
        "another aud": (token(aud="tailgate-dev", iss=ISSUER), f"token audience (aud) is not {AUDIENCE!r}"),
        "another iss": (token(aud=AUDIENCE, iss="https://evil.example"), f"token issuer (iss) is not {ISSUER!r}"),
    }
    for what, (tok, message) in refused.items():
        status, said = status_of(gw.base, tok)
        assert status == 401 and message in said, (what, said)

    # `python -m gateway token` puts the configured audience and issuer in by default,
    # and --aud/--iss name others (for another gateway's configuration).
    env = service_env(TAILGATE_AUTH_SECRET=SECRET, **settings)
    cmd = [sys.executable, "-m", "gateway", "token", "--sub", "bob", "--allow", "kafka:*"]
    minted = {}
    for extra in ([], ["--aud", "tailgate-dev"], ["--iss", "https://other.example"]):
        out = subprocess.run([*cmd, *extra], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
        minted[" ".join(extra)] = out.stdout.split()[0]
    claims = jwt.decode(minted[""], SECRET, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER)
    assert (claims["aud"], claims["iss"]) == (AUDIENCE, ISSUER)
    assert status_of(gw.base, minted[""]) == (200, "")
    assert status_of(gw.base, minted["--aud tailgate-dev"])[0] == 401
    assert status_of(gw.base, minted["--iss https://other.example"])[0] == 401
