"""Checks on the operations files: systemd/telepay.service and Caddyfile.

The unit is checked with `systemd-analyze verify` (and, where supported, `systemd-analyze
security --offline`); the Caddyfile with `caddy validate`, `caddy adapt` and a live `caddy run`
in front of a stub upstream. Each tool-backed test is skipped, with the reason, when the tool is
not installed (CI installs caddy). The text-level checks always run.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "telepay.service"
CADDYFILE = ROOT / "Caddyfile"
EXEC_START = "/opt/telepay/.venv/bin/telepay"

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
CADDY = shutil.which("caddy")

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (it comes with systemd); unit not verified",
)
needs_caddy = pytest.mark.skipif(
    CADDY is None,
    reason="caddy is not installed (apt-get install caddy); Caddyfile not validated",
)


# --------------------------------------------------------------------------- systemd unit


def _verifiable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at a stub executable, and nothing else changed.

    `systemd-analyze verify` checks that ExecStart's binary exists and is executable; on a
    build machine /opt/telepay/.venv/bin/telepay does not, so that one path is rewritten.
    """
    stub = tmp_path / "bin" / "telepay"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    original = UNIT.read_text().splitlines(keepends=True)
    rewritten = [
        line.replace(f"ExecStart={EXEC_START} ", f"ExecStart={stub} ", 1) for line in original
    ]
    changed = [i for i, (a, b) in enumerate(zip(original, rewritten)) if a != b]
    assert len(changed) == 1 and rewritten[changed[0]].startswith("ExecStart="), changed
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    copy = unit_dir / "telepay.service"
    copy.write_text("".join(rewritten))
    return copy


def _verify(unit: Path) -> tuple[int, list[str]]:
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""},
    )
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return proc.returncode, lines


def _lines_about(unit: Path, lines: list[str]) -> list[str]:
    # systemd-analyze also loads the units ours depends on (network-online.target, ...); on
    # a full host those may carry warnings of their own. Only lines naming our file or unit
    # count against us; all output is still shown when the test fails.
    return [ln for ln in lines if str(unit) in ln or unit.name in ln]


@needs_systemd_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path):
    unit = _verifiable_copy(tmp_path)
    rc, lines = _verify(unit)
    ours = _lines_about(unit, lines)
    assert rc == 0 and not ours, "systemd-analyze verify:\n" + "\n".join(lines)


@needs_systemd_analyze
def test_verify_check_catches_a_bad_directive(tmp_path):
    """The check above must be able to fail: unknown keys and bad values are only warnings
    (exit code 0), so a clean result is 'no lines about our unit', which this proves."""
    unit = _verifiable_copy(tmp_path)
    text = unit.read_text()
    text = text.replace("ProtectKernelLogs=yes", "ProtectKernelLog=yes")
    text = re.sub(r"^RestartSec=.*$", "RestartSec=soon", text, count=1, flags=re.M)
    unit.write_text(text)
    _rc, lines = _verify(unit)
    ours = _lines_about(unit, lines)
    assert any("ProtectKernelLog" in ln for ln in ours), lines
    assert any("soon" in ln for ln in ours), lines


@needs_systemd_analyze
def test_unit_hardening_exposure_is_low(tmp_path):
    unit = _verifiable_copy(tmp_path)
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": ""},
    )
    out = proc.stdout + proc.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", out)
    if match is None:
        pytest.skip("this systemd-analyze has no offline security report (systemd < 250)")
    assert float(match.group(1)) <= 2.0, out


# --------------------------------------------------------------------------- Caddyfile


def _caddyfile_code() -> str:
    """The Caddyfile without comments (a '#' starting a token begins a comment)."""
    lines = CADDYFILE.read_text().splitlines()
    return "\n".join(re.sub(r"(^|\s)#.*$", "", ln).rstrip() for ln in lines)


def test_caddyfile_proxies_only_webhooks_and_health_text():
    code = _caddyfile_code()
    assert code.count("reverse_proxy") == 1, "exactly one reverse_proxy"
    assert "{$TELEPAY_DOMAIN}" in code
    assert "reverse_proxy 127.0.0.1:{$TELEPAY_HTTP_PORT:8080}" in code
    # The proxy sits inside `handle @telepay`, and @telepay is exactly these two paths.
    assert re.search(r"handle @telepay \{\s*reverse_proxy ", code)
    matchers = re.findall(r"^\s*@telepay\s+(.+)$", code, flags=re.M)
    assert matchers == ["path /health /webhooks/*"]
    # Everything else: a bare handle that answers 404.
    assert re.search(r"\n\thandle \{\s*respond 404\s*\}", code)
    assert re.search(r"request_body \{\s*max_size 64KB\s*\}", code)
    assert re.search(r"log \{\s*output stdout\s*format json\s*\}", code)


def _caddy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "caddy-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEPAY_")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home), XDG_CONFIG_HOME=str(home))
    env.update(extra)
    return env


@needs_caddy
def test_caddyfile_passes_caddy_validate(tmp_path):
    proc = subprocess.run(
        [CADDY, "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_caddy_env(tmp_path, TELEPAY_DOMAIN="pay.example.com"),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Valid configuration" in out, out
    # Caddy reports unformatted input, redundant or deprecated settings as warnings.
    problems = [ln for ln in out.splitlines() if re.search(r'"level":"(warn|error)"', ln)]
    assert not problems, out


@needs_caddy
def test_caddyfile_refuses_to_load_without_a_domain(tmp_path):
    proc = subprocess.run(
        [CADDY, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_caddy_env(tmp_path),
    )
    assert proc.returncode != 0


def _adapt(tmp_path: Path, **env: str) -> dict:
    proc = subprocess.run(
        [CADDY, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_caddy_env(tmp_path, **env),
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _handlers(routes: list[dict], chain: tuple = ()):
    """Yield (matcher sets on the way down, handler) for every handler in a route tree."""
    for route in routes:
        here = chain + (tuple(json.dumps(m, sort_keys=True) for m in route.get("match", [])),)
        for handler in route.get("handle", []):
            yield here, handler
            if handler.get("handler") == "subroute":
                yield from _handlers(handler.get("routes", []), here)


@needs_caddy
def test_adapted_config_proxies_only_webhooks_and_health(tmp_path):
    for port_env, dial in ((None, "127.0.0.1:8080"), ("9123", "127.0.0.1:9123")):
        env = {"TELEPAY_DOMAIN": "pay.example.com"}
        if port_env:
            env["TELEPAY_HTTP_PORT"] = port_env
        cfg = _adapt(tmp_path, **env)
        servers = cfg["apps"]["http"]["servers"]
        found = [
            (chain, h)
            for server in servers.values()
            for chain, h in _handlers(server["routes"])
            if h.get("handler") == "reverse_proxy"
        ]
        assert len(found) == 1, found
        chain, proxy = found[0]
        assert [u["dial"] for u in proxy["upstreams"]] == [dial]
        matchers = [json.loads(m) for level in chain for m in level]
        assert {"host": ["pay.example.com"]} in matchers
        path_matchers = [m["path"] for m in matchers if "path" in m]
        assert path_matchers == [["/health", "/webhooks/*"]], matchers
        assert all(set(m) <= {"host", "path"} for m in matchers), matchers
        # No trusted_proxies: client-sent X-Forwarded-For is replaced, never extended.
        assert "trusted_proxies" not in proxy
        # The site's last route catches everything else with a bare 404.
        site_routes = next(iter(servers.values()))["routes"][0]["handle"][0]["routes"]
        last = site_routes[-1]
        assert "match" not in last
        inner = [h for _c, h in _handlers(last["handle"][0]["routes"])]
        assert inner == [{"handler": "static_response", "status_code": 404}]


# --------------------------------------------------------------------------- live Caddy


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        self.seen: list[dict] = []
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)

    def handle_error(self, request, client_address):  # cut-off requests are expected
        pass


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _read_body(self) -> bytes | None:
        """The complete body, or None if the connection ended before it was complete."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size_line = self.rfile.readline()
                if not size_line:
                    return None
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return body
                chunk = self.rfile.read(size + 2)
                if len(chunk) < size + 2:
                    return None
                body += chunk[:size]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        return body if len(body) == length else None

    def _handle(self):
        body = self._read_body()
        self.server.seen.append(
            {
                "path": self.path,
                "xff": self.headers.get_all("X-Forwarded-For"),
                "complete": body is not None,
                "size": None if body is None else len(body),
            }
        )
        if body is None:
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = do_HEAD = _handle

    def log_message(self, *args):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_caddy(tmp_path: Path, upstream_port: int) -> Iterator[tuple[int, IO[str]]]:
    """The project's Caddyfile, run by caddy on a free loopback port in front of
    `127.0.0.1:upstream_port`; yields the port and caddy's stdout (its access log)."""
    port = _free_port()
    env = _caddy_env(tmp_path, TELEPAY_DOMAIN=f"http://127.0.0.1:{port}", TELEPAY_HTTP_PORT=str(upstream_port))
    cfg = _adapt(tmp_path, **{k: env[k] for k in ("TELEPAY_DOMAIN", "TELEPAY_HTTP_PORT")})
    # Test-only changes: no admin endpoint, loopback listener, private storage.
    cfg["admin"] = {"disabled": True}
    cfg["storage"] = {"module": "file_system", "root": str(tmp_path / "caddy-storage")}
    for server in cfg["apps"]["http"]["servers"].values():
        server["listen"] = [f"127.0.0.1:{port}"]
    config = tmp_path / "caddy.json"
    config.write_text(json.dumps(cfg))
    stdout = open(tmp_path / "caddy.stdout", "w+")
    stderr = open(tmp_path / "caddy.stderr", "w+")
    proc = subprocess.Popen([CADDY, "run", "--config", str(config)], env=env, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                stderr.seek(0)
                pytest.fail("caddy exited early:\n" + stderr.read())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("caddy did not start listening")
                time.sleep(0.05)
        yield port, stdout
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stdout.close()
        stderr.close()


@pytest.fixture
def live_caddy(tmp_path):
    upstream = _Upstream()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    try:
        with running_caddy(tmp_path, upstream.server_address[1]) as (port, stdout):

            def request(method, path, body=None, headers=None):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                try:
                    conn.request(method, path, body=body, headers=headers or {})
                    resp = conn.getresponse()
                    resp.read()
                    return resp.status
                except (ConnectionError, http.client.HTTPException):
                    return None
                finally:
                    conn.close()

            yield request, upstream, stdout
    finally:
        upstream.shutdown()
        upstream.server_close()


@needs_caddy
def test_live_caddy_routes_limits_and_client_address(live_caddy):
    request, upstream, stdout = live_caddy

    def sent(method, path, **kw):
        before = len(upstream.seen)
        status = request(method, path, **kw)
        return status, upstream.seen[before:]

    # Proxied: /health and /webhooks/*.
    status, seen = sent("GET", "/health")
    assert status == 200 and [s["path"] for s in seen] == ["/health"]
    status, seen = sent("POST", "/webhooks/nowpayments", body=b"{}")
    assert status == 200 and [s["path"] for s in seen] == ["/webhooks/nowpayments"]

    # Not proxied: everything else, including path tricks aimed at /status.
    for path in (
        "/",
        "/status",
        "/webhooks",
        "/healthz",
        "/health/../status",
        "/webhooks/../status",
        "/webhooks/%2e%2e/status",
        "/webhooks/x/../../status",
        "//status",
    ):
        status, seen = sent("GET", path)
        assert (status, seen) == (404, []), path

    # X-Forwarded-For: whatever the client claims is replaced by the TCP peer's address.
    status, seen = sent(
        "POST", "/webhooks/notify", body=b"{}", headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"}
    )
    assert status == 200 and seen[0]["xff"] == ["127.0.0.1"]

    # Body limit: 64KB (64 000 bytes) passes; a larger declared body never reaches the app.
    status, seen = sent("POST", "/webhooks/notify", body=b"x" * 64000)
    assert status == 200 and seen[0]["size"] == 64000
    status, seen = sent("POST", "/webhooks/notify", body=b"x" * 64001)
    assert (status, seen) == (413, [])
    # A chunked body that grows past the limit is cut off in flight: never delivered whole.
    status, seen = sent("POST", "/webhooks/notify", body=iter([b"x" * 40000, b"x" * 40000]))
    assert status in (413, 502, None)
    assert not [s for s in seen if s["complete"] and (s["size"] or 0) > 64000]

    # Access log: one JSON object per request on stdout.
    time.sleep(0.2)
    stdout.flush()
    stdout.seek(0)
    lines = [json.loads(ln) for ln in stdout.read().splitlines() if ln.strip()]
    access = [ln for ln in lines if ln.get("logger", "").startswith("http.log.access")]
    assert {ln["request"]["uri"] for ln in access} >= {"/health", "/status"}
