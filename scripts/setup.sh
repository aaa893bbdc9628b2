#!/usr/bin/env bash
# Set up a machine for Tailgate: system packages that are missing, then .venv/ with the
# pinned Python packages. Safe to run again: it only does what is missing.
#   scripts/setup.sh          runtime (the demo; haproxy for TAILGATE_REPLICAS=N)
#   scripts/setup.sh --test   runtime plus test tools (pytest, chromium for browser tests,
#                             nginx to check conf/nginx.conf)
# Debian enables the services of the packages it installs (redis-server, haproxy, nginx);
# Tailgate starts its own processes and uses none of them.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

apt_install() {
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing system packages: $*"
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# haproxy and nginx live in /usr/sbin, which a non-root PATH may lack
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
have haproxy || missing+=(haproxy)  # the fleet demo's balancer (conf/haproxy.cfg)
if [ "$want_test" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # test certificates (Kafka over TLS)
  have nginx || missing+=(nginx)  # tests check and run conf/nginx.conf
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)  # promtool: conf/monitoring/ alert rules
  command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)  # verifies the tailgate formula's units
  command -v tmux >/dev/null 2>&1 || missing+=(tmux)  # a real terminal for the tailgate command's tests
fi
[ ${#missing[@]} -gt 0 ] && apt_install "${missing[@]}"

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi

req=requirements.txt
[ "$want_test" = 1 ] && req=requirements-dev.txt
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)-$want_test"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages from $req"
  .venv/bin/pip install -q --disable-pip-version-check -r "$req"
  rm -f .venv/.installed-*
  touch "$stamp"
  # a test set-up also satisfies the runtime
  [ "$want_test" = 1 ] && touch ".venv/.installed-$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)-0"
fi

# The `tailgate` command: a launcher in .venv/bin running this checkout's `python -m tailgate`.
# It finds the checkout from the path it was started by (.venv/bin/tailgate -> ../..), so it
# is the same file for every checkout; nothing is copied that could go stale.
launcher=.venv/bin/tailgate
read -r -d '' body <<'LAUNCHER' || true
#!/bin/sh
# Installed by scripts/setup.sh: the tailgate command of the checkout this .venv is in.
here=$(dirname "$0")
PYTHONPATH="$here/../..${PYTHONPATH:+:$PYTHONPATH}" exec "$here/python" -m tailgate "$@"
LAUNCHER
if [ ! -x "$launcher" ] || [ "$(cat "$launcher")" != "$body" ]; then
  printf '%s\n' "$body" > "$launcher"
  chmod 755 "$launcher"
fi
exit 0
