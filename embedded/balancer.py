"""The shipped load-balancer configs, run for the fleet demo and the tests.

`conf/haproxy.cfg` and `conf/nginx.conf` are used as shipped except for their marked
lines: the line after ``# tailgate:bind`` (HAProxy) or ``# tailgate:listen`` (nginx)
gets this run's address, and the ``server`` lines after ``# tailgate:servers`` become
one per replica, each a copy of the first shipped one with only the address (and
HAProxy's server name) changed. Everything else, timeouts, checks, logging, what is
refused, is what an operator deploys.

`HAProxy` also opens a stats socket (the runtime API), so a caller can wait until the
balancer sees the replicas as it expects; nginx has no equivalent (no active checks).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

from embedded.services import port_open, stop_process, wait_until

ROOT = Path(__file__).resolve().parent.parent
HAPROXY_CFG = ROOT / "conf" / "haproxy.cfg"
NGINX_CONF = ROOT / "conf" / "nginx.conf"
ADDRESS = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}:\d+\b")


def binary(name: str) -> str:
    """haproxy or nginx: on PATH, else in /usr/sbin (not on a non-root PATH)."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed: run scripts/setup.sh (installs Debian's {name})")
    return found


def _marked(lines: list[str], marker: str) -> int:
    """Index of the line after `# tailgate:<marker>`."""
    for i, line in enumerate(lines):
        if line.strip() == f"# tailgate:{marker}" or line.strip().startswith(f"# tailgate:{marker} "):
            return i + 1
    raise ValueError(f"no '# tailgate:{marker}' line in the config")


def render(text: str, listen_marker: str, listen: str, servers: list[str]) -> str:
    """`text` with the marked listen line replaced by `listen` (indented as it was) and
    its marked server lines by `servers`, each built from the first shipped one by
    `_server_line`."""
    lines = text.splitlines()
    at = _marked(lines, listen_marker)
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    lines[at] = indent + listen
    first = _marked(lines, "servers")
    end = first
    while end < len(lines) and lines[end].strip().startswith("server "):
        end += 1
    template = lines[first]
    lines[first:end] = [_server_line(template, i + 1, address) for i, address in enumerate(servers)]
    return "\n".join(lines) + "\n"


def _server_line(template: str, number: int, address: str) -> str:
    line = ADDRESS.sub(address, template, count=1)
    # HAProxy names each server (`server gw1 <address> ...`); nginx does not.
    return re.sub(r"^(\s*server\s+)gw\d+(\s)", rf"\g<1>gw{number}\g<2>", line)


class HAProxy:
    """conf/haproxy.cfg on `port`, balancing the gateways on `replicas` (ports on 127.0.0.1)."""

    def __init__(self, port: int, replicas: list[int], workdir: Path, log_path: Path | None = None) -> None:
        self.port = port
        self.replicas = replicas
        self.dir = workdir
        self.config = workdir / "haproxy.cfg"
        self.socket = workdir / "haproxy.sock"
        self.log_path = log_path or workdir / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        servers = [f"127.0.0.1:{p}" for p in self.replicas]
        text = render(HAPROXY_CFG.read_text(), "bind", f"bind 127.0.0.1:{self.port}", servers)
        # The runtime API, for `servers_up`; not part of what is shipped.
        text = text.replace("\nglobal\n", f"\nglobal\n    stats socket {self.socket} mode 600 level admin\n", 1)
        self.config.write_text(text)
        return self.config

    def check(self) -> subprocess.CompletedProcess[str]:
        """`haproxy -c` on the config this instance runs."""
        return subprocess.run([binary("haproxy"), "-c", "-f", str(self.write_config())], capture_output=True, text=True)

    def start(self, timeout: float = 10.0) -> HAProxy:
        self.write_config()
        out = open(self.log_path, "ab")  # noqa: SIM115
        # -db: in the foreground, one process; logs go to its standard output (log stdout).
        self.proc = subprocess.Popen(
            [binary("haproxy"), "-db", "-f", str(self.config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: self.proc.poll() is not None or port_open(self.port), timeout, what="haproxy listening")
        if self.proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
        return self

    def command(self, line: str) -> str:
        """One runtime-API command on the stats socket; its answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict[str, str]]:
        """`show stat` of the backend, by server name (gw1, ...) and BACKEND: its counters
        (econ: connection errors, wretr: retries, wredis: redispatches) and status."""
        rows = self.command("show stat").splitlines()
        header = rows[0].removeprefix("# ").split(",")
        table = [dict(zip(header, row.split(","), strict=False)) for row in rows[1:] if row]
        return {row["svname"]: row for row in table if row["pxname"] == "gateways"}

    def servers_up(self) -> list[int]:
        """Ports of the replicas HAProxy now sends new connections to (status UP)."""
        stats = self.stats()
        return [port for i, port in enumerate(self.replicas) if stats[f"gw{i + 1}"]["status"] == "UP"]

    def wait_servers(self, ports: list[int], timeout: float = 15.0) -> None:
        """Until every replica of `ports` is UP in HAProxy."""
        wait_until(lambda: set(ports) <= set(self.servers_up()), timeout, 0.05, what=f"haproxy to see {ports} up")

    def stop(self) -> None:
        stop_process(self.proc, 5, "haproxy")
        self.proc = None


class Nginx:
    """conf/nginx.conf under a prefix directory of its own, on `port`, before `replicas`."""

    def __init__(self, port: int, replicas: list[int], prefix: Path) -> None:
        self.port = port
        self.replicas = replicas
        self.prefix = prefix
        self.config = prefix / "nginx.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    def write_config(self) -> Path:
        (self.prefix / "logs").mkdir(parents=True, exist_ok=True)
        servers = [f"127.0.0.1:{p}" for p in self.replicas]
        self.config.write_text(render(NGINX_CONF.read_text(), "listen", f"listen 127.0.0.1:{self.port};", servers))
        return self.config

    def _args(self) -> list[str]:
        return [binary("nginx"), "-p", str(self.prefix), "-c", str(self.config)]

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on the config this instance runs."""
        self.write_config()
        return subprocess.run([*self._args(), "-t"], capture_output=True, text=True)

    def start(self, timeout: float = 10.0) -> Nginx:
        self.write_config()
        log = open(self.prefix / "logs" / "stderr.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*self._args(), "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_until(lambda: self.proc.poll() is not None or port_open(self.port), timeout, what="nginx listening")
        if self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {self.proc.returncode}")
        return self

    def stop(self) -> None:
        stop_process(self.proc, 5, "nginx")
        self.proc = None
