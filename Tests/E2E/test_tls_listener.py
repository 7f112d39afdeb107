"""HTTPS on the listener (server.tls): the openai SDK over TLS, keep-alive, streaming and pipelining as on plain
sockets, client certificates (mTLS), plain HTTP and garbage on the TLS port, the handshake deadline, and the
certificate reloaded on SIGHUP. Certificates come from the openssl command line, made fresh per test module."""
from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import openai
import pytest

from conftest import Flywheel, Launcher, upstream_cfg
from helpers import httpx, poll, user_msg

HTTPS_LISTEN_RE = re.compile(r"listening on https://127\.0\.0\.1:(\d+)")
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


# ---------------------------------------------------------------- certificates

def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class Certs:
    """A CA, two server certificates (a and b, for reloads), a client certificate signed by the CA and a
    self-signed client certificate no one trusts."""

    def __init__(self, directory: Path):
        self.dir = directory
        d = directory
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=Flywheel test CA", "-keyout", str(d / "ca.key"),
                "-out", str(d / "ca.pem"))
        for name in ("a", "b"):
            openssl("req", "-x509", *ec, "-days", "2", "-subj", f"/CN=127.0.0.1/O=server-{name}",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / f"server-{name}.key"),
                    "-out", str(d / f"server-{name}.pem"))
        openssl("req", *ec, "-subj", "/CN=service-client", "-keyout", str(d / "client.key"), "-out", str(d / "client.csr"))
        openssl("x509", "-req", "-in", str(d / "client.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
                "-CAcreateserial", "-days", "2", "-out", str(d / "client.pem"))
        openssl("req", "-x509", *ec, "-days", "2", "-subj", "/CN=stranger", "-keyout", str(d / "stranger.key"),
                "-out", str(d / "stranger.pem"))
        # The live files the daemon reads (copies of a, replaced in the reload test).
        self.cert = d / "live-cert.pem"
        self.key = d / "live-key.pem"
        self.use("a")

    def use(self, name: str) -> None:
        self.cert.write_bytes((self.dir / f"server-{name}.pem").read_bytes())
        self.key.write_bytes((self.dir / f"server-{name}.key").read_bytes())

    def der(self, name: str) -> bytes:
        return ssl.PEM_cert_to_DER_cert((self.dir / f"server-{name}.pem").read_text())

    def trust(self, *names: str, client: str | None = None) -> ssl.SSLContext:
        """A client context trusting the given server certificates, presenting `client` if given."""
        context = ssl.create_default_context()
        for name in names:
            context.load_verify_locations(cafile=str(self.dir / f"server-{name}.pem"))
        if client:
            context.load_cert_chain(str(self.dir / f"{client}.pem"), str(self.dir / f"{client}.key"))
        return context


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return Certs(tmp_path_factory.mktemp("tls-certs"))


# ---------------------------------------------------------------- the daemon over https

class TLSFlywheel(Flywheel):
    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = HTTPS_LISTEN_RE.search(self.stderr())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                pytest.fail(f"flywheel exited with {self.proc.returncode} before listening:\n{self.stderr()}", pytrace=False)
            time.sleep(0.02)
        self.proc.kill()
        pytest.fail(f"flywheel did not listen on https within 20 s:\n{self.stderr()}", pytrace=False)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def tls_client(self, context: ssl.SSLContext, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.v1, api_key="sk-test", max_retries=0, timeout=20,
                             http_client=openai.DefaultHttpxClient(verify=context), **kw)


class TLSLauncher(Launcher):
    def __call__(self, config: dict | None = None, *, args=(), env=None, name=None) -> TLSFlywheel:
        fw = TLSFlywheel(self.binary, self.workdir, name or f"fw{len(self.started)}", config, list(args), env)
        self.started.append(fw)
        return fw


@pytest.fixture
def start_tls(flywheel_bin, tmp_path):
    launcher = TLSLauncher(flywheel_bin, tmp_path)
    yield launcher
    problems = launcher.stop_all()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def tls_config(certs: Certs, upstream_url: str, **tls) -> dict:
    settings = {"cert_file": str(certs.cert), "key_file": str(certs.key)}
    settings.update(tls)
    return {"server": {"listen": "127.0.0.1:0", "request_timeout": 10, "idle_timeout": 30, "tls": settings},
            "upstreams": [upstream_cfg("primary", upstream_url, retries=0)],
            "routes": [{"model": "*", "upstreams": ["primary"]}]}


def tls_socket(port: int, context: ssl.SSLContext, timeout: float = 10) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def read_responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """Reads `count` Content-Length HTTP responses from a socket: (status, body) each."""
    buffer = b""
    out: list[tuple[int, bytes]] = []
    while len(out) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end].decode("latin-1")
            m = re.search(r"(?im)^content-length:\s*(\d+)", head)
            length = int(m.group(1)) if m else 0
            if len(buffer) >= head_end + 4 + length:
                out.append((int(head.split(" ", 2)[1]), buffer[head_end + 4:head_end + 4 + length]))
                buffer = buffer[head_end + 4 + length:]
                continue
        data = sock.recv(65536)
        if not data:
            raise AssertionError(f"connection closed after {len(out)} of {count} responses")
        buffer += data
    return out


def closed_by_server(sock: socket.socket, timeout: float = 15) -> bool:
    """True once the server closed the connection (EOF or reset), waiting at most `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except (socket.timeout, TimeoutError):
        return False


def serial_seen(port: int, context: ssl.SSLContext) -> bytes:
    with tls_socket(port, context) as s:
        return s.getpeercert(binary_form=True)


# ---------------------------------------------------------------- tests

def test_openai_sdk_over_https_plain_and_streaming(start_tls, certs, fake):
    fw = start_tls(tls_config(certs, fake.url))
    assert "tls certificate: subject /CN=127.0.0.1/O=server-a" in fw.stderr()
    client = fw.tls_client(certs.trust("a"))
    r = client.chat.completions.create(model="gpt-4o-mini", messages=user_msg("over https"))
    assert r.choices[0].message.content == "echo: over https"
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=user_msg("a streamed answer over tls"),
                                            stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: a streamed answer over tls"
    # An untrusted certificate is refused by the client: the daemon really serves the configured one.
    with pytest.raises(openai.APIConnectionError):
        fw.tls_client(certs.trust("b")).chat.completions.create(model="gpt-4o-mini", messages=user_msg("x"))


class CountingContext(ssl.SSLContext):
    """A client context that counts the TLS connections made with it."""
    connections = 0

    def wrap_socket(self, *args, **kwargs):  # type: ignore[override]
        type(self).connections += 1
        return super().wrap_socket(*args, **kwargs)


def test_keep_alive_carries_many_requests_and_streams_on_one_tls_connection(start_tls, certs, fake):
    fw = start_tls(tls_config(certs, fake.url))
    context = CountingContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(certs.dir / "server-a.pem"))
    CountingContext.connections = 0
    http = openai.DefaultHttpxClient(verify=context, timeout=20)
    client = openai.OpenAI(base_url=fw.v1, api_key="sk-test", max_retries=0, http_client=http)
    for i in range(3):
        r = client.chat.completions.create(model="gpt-4o-mini", messages=user_msg(f"keep {i}"))
        assert r.choices[0].message.content == f"echo: keep {i}"
        # A stream read to its end (the SDK itself drops the connection after [DONE], on plain sockets too).
        body = {"model": "gpt-4o-mini", "stream": True, "messages": user_msg(f"stream {i}")}
        with http.stream("POST", fw.v1 + "/chat/completions", json=body) as streamed:
            assert streamed.status_code == 200
            text = b"".join(streamed.iter_bytes())
        assert b'"content": " stream"' in text and text.rstrip().endswith(b"data: [DONE]")
    assert CountingContext.connections == 1, "six requests should have shared one TLS connection"
    # The server agrees: this client's connection is the only one open.
    metrics = http.get(fw.base_url + "/metrics").text
    assert re.search(r"(?m)^flywheel_open_connections 1$", metrics), metrics[-2000:]
    assert re.search(r"(?m)^flywheel_tls_sessions 1$", metrics), metrics[-2000:]
    assert CountingContext.connections == 1
    http.close()


def test_pipelined_requests_over_tls_are_answered_in_order(start_tls, certs, fake):
    fw = start_tls(tls_config(certs, fake.url))
    with tls_socket(fw.port, certs.trust("a")) as s:
        assert s.selected_alpn_protocol() in (None, "http/1.1")
        # Many requests in one write: several TLS records, more than one read buffer of the server.
        body = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"piped"}]}'
        chat = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        s.sendall(HEALTH * 40 + chat + HEALTH * 40)
        answers = read_responses(s, 81)
        assert [status for status, _ in answers] == [200] * 81
        assert b"echo: piped" in answers[40][1]
        assert all(b'"ok"' in body for _, body in answers[:40] + answers[41:])


def test_tls_12_clients_get_a_forward_secret_aead_cipher(start_tls, certs, fake):
    fw = start_tls(tls_config(certs, fake.url))
    context = certs.trust("a")
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with tls_socket(fw.port, context) as s:
        assert s.version() == "TLSv1.2"
        name, _, _ = s.cipher()
        assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name
        s.sendall(HEALTH)
        assert read_responses(s, 1)[0][0] == 200
    # A client that offers only CBC ciphers finds nothing in common.
    legacy = certs.trust("a")
    legacy.maximum_version = ssl.TLSVersion.TLSv1_2
    legacy.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA")
    with pytest.raises(ssl.SSLError):
        tls_socket(fw.port, legacy).close()


def test_alpn_offers_http11(start_tls, certs, fake):
    fw = start_tls(tls_config(certs, fake.url))
    context = certs.trust("a")
    context.set_alpn_protocols(["h2", "http/1.1"])
    with tls_socket(fw.port, context) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        s.sendall(HEALTH)
        assert read_responses(s, 1)[0][0] == 200


def test_a_returning_client_resumes_its_session_from_a_ticket(start_tls, certs, fake):
    fw = start_tls(tls_config(certs, fake.url))
    context = certs.trust("a")
    with tls_socket(fw.port, context) as first:
        first.sendall(HEALTH)
        assert read_responses(first, 1)[0][0] == 200  # TLS 1.3 tickets arrive after the handshake
        session = first.session
    raw = socket.create_connection(("127.0.0.1", fw.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as second:
        assert second.session_reused, "the server did not resume the session (tickets off?)"
        second.sendall(HEALTH)
        assert read_responses(second, 1)[0][0] == 200


def test_mtls_require_accepts_the_cas_clients_and_refuses_others(start_tls, certs, fake):
    fw = start_tls(tls_config(certs, fake.url, client_ca_file=str(certs.dir / "ca.pem"), client_auth="require"))
    ok = fw.tls_client(certs.trust("a", client="client"))
    assert ok.chat.completions.create(model="gpt-4o-mini", messages=user_msg("mtls")).choices[0].message.content == "echo: mtls"
    for refused in (certs.trust("a"), certs.trust("a", client="stranger")):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with tls_socket(fw.port, refused) as s:
                # TLS 1.3: the client finishes first, the server's refusal comes with the first read.
                s.sendall(HEALTH)
                if not s.recv(4096):
                    raise ConnectionError("closed without an answer")
    assert not [r for r in fake.requests if r.path.endswith("/chat/completions") and "mtls" not in r.body.decode()]
    assert ok.chat.completions.create(model="gpt-4o-mini", messages=user_msg("still")).choices[0].message.content == "echo: still"


def test_mtls_optional_serves_clients_without_a_certificate_but_refuses_a_bad_one(start_tls, certs, fake):
    fw = start_tls(tls_config(certs, fake.url, client_ca_file=str(certs.dir / "ca.pem"), client_auth="optional"))
    for context in (certs.trust("a"), certs.trust("a", client="client")):
        with tls_socket(fw.port, context) as s:
            s.sendall(HEALTH)
            assert read_responses(s, 1)[0][0] == 200
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with tls_socket(fw.port, certs.trust("a", client="stranger")) as s:
            s.sendall(HEALTH)
            if not s.recv(4096):
                raise ConnectionError("closed without an answer")


def test_plain_http_to_the_tls_port_gets_a_400_and_others_are_unaffected(start_tls, certs, fake):
    fw = start_tls(tls_config(certs, fake.url))
    with tls_socket(fw.port, certs.trust("a")) as kept:
        kept.sendall(HEALTH)
        assert read_responses(kept, 1)[0][0] == 200
        with socket.create_connection(("127.0.0.1", fw.port), timeout=10) as plain:
            plain.sendall(HEALTH)
            status, body = read_responses(plain, 1)[0]
            assert status == 400
            assert b"https://" in body
            assert closed_by_server(plain)
        kept.sendall(HEALTH)
        assert read_responses(kept, 1)[0][0] == 200


def test_garbage_handshakes_are_closed_and_many_concurrent_handshakes_work(start_tls, certs, fake):
    fw = start_tls(tls_config(certs, fake.url))
    closed_at_once = [
        b"\x16\x03\x01\x00\x05hello",                       # a handshake record holding nonsense
        b"\x80\x2e\x01\x00\x02\x00\x15\x00",                 # an SSLv2-style hello
        bytes(range(256)) * 4,                                # binary noise
        b"\x16\x03\x03\x00\x30" + b"\xff" * 48,             # a complete record of garbage
    ]
    for data in closed_at_once:
        with socket.create_connection(("127.0.0.1", fw.port), timeout=10) as s:
            s.sendall(data)
            assert closed_by_server(s), f"garbage {data[:8]!r} was not closed"
    with tls_socket(fw.port, certs.trust("a")) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        metrics = read_responses(s, 1)[0][1].decode()
    failed = re.search(r"(?m)^flywheel_tls_handshake_failures_total (\d+)$", metrics)
    assert failed and int(failed.group(1)) >= len(closed_at_once), metrics[-2000:]
    # Incomplete records (a header announcing 64 KiB, one byte) wait for more: the handshake deadline's job.
    for data in (b"\x16\x03\x03\xff\xff" + b"\x00" * 300, b"\x16"):
        with socket.create_connection(("127.0.0.1", fw.port), timeout=10) as s:
            s.sendall(data)
    results: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        with tls_socket(fw.port, certs.trust("a"), timeout=30) as s:
            s.sendall(HEALTH)
            status = read_responses(s, 1)[0][0]
        with lock:
            results.append(status)

    threads = [threading.Thread(target=one) for _ in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * 48
    assert fw.alive()


def test_a_silent_client_is_closed_after_the_handshake_deadline_while_others_are_served(start_tls, certs, fake):
    fw = start_tls(tls_config(certs, fake.url, handshake_timeout=1))
    silent = [socket.create_connection(("127.0.0.1", fw.port), timeout=10) for _ in range(3)]
    slow = socket.create_connection(("127.0.0.1", fw.port), timeout=10)
    slow.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
    try:
        with tls_socket(fw.port, certs.trust("a")) as s:
            s.sendall(HEALTH)
            assert read_responses(s, 1)[0][0] == 200
        for s in silent + [slow]:
            assert closed_by_server(s, timeout=15), "a client that never finished its handshake was kept open"
        # A client that finished its handshake is not held to that deadline.
        with tls_socket(fw.port, certs.trust("a")) as s:
            time.sleep(1.5)  # longer than the handshake deadline; the idle timeout (30 s) applies now
            s.sendall(HEALTH)
            assert read_responses(s, 1)[0][0] == 200
    finally:
        for s in silent + [slow]:
            s.close()


def test_sighup_reloads_the_certificate_for_new_connections_and_a_bad_one_keeps_the_old(start_tls, certs, fake):
    certs.use("a")
    fw = start_tls(tls_config(certs, fake.url))
    both = certs.trust("a", "b")
    assert serial_seen(fw.port, both) == certs.der("a")
    with tls_socket(fw.port, both) as established:
        established.sendall(HEALTH)
        assert read_responses(established, 1)[0][0] == 200

        certs.use("b")
        fw.send(signal.SIGHUP)
        poll(lambda: "tls certificate for new connections" in fw.stderr(), timeout=10, what="the tls reload line")
        assert "O=server-b" in fw.stderr().split("tls certificate for new connections")[1]
        assert serial_seen(fw.port, both) == certs.der("b")
        # The connection made before the reload keeps its session and certificate.
        established.sendall(HEALTH)
        assert read_responses(established, 1)[0][0] == 200
        assert established.getpeercert(binary_form=True) == certs.der("a")

    # A broken certificate file: the reload says so and new connections still get b.
    certs.cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    fw.send(signal.SIGHUP)
    poll(lambda: "tls: NOT reloaded" in fw.stderr(), timeout=10, what="the failed tls reload line")
    assert "new connections keep the previous certificate" in fw.stderr()
    assert serial_seen(fw.port, both) == certs.der("b")
    # A key that does not belong to the certificate is refused too.
    certs.use("a")
    certs.key.write_bytes((certs.dir / "server-b.key").read_bytes())
    before = fw.stderr().count("tls: NOT reloaded")
    fw.send(signal.SIGHUP)
    poll(lambda: fw.stderr().count("tls: NOT reloaded") > before, timeout=10, what="the second failed reload")
    assert "does not match the certificate" in fw.stderr().split("tls: NOT reloaded")[-1]
    assert serial_seen(fw.port, both) == certs.der("b")
    certs.use("a")


def test_admin_reload_reloads_the_certificate_too(start_tls, certs, fake):
    certs.use("a")
    fw = start_tls(tls_config(certs, fake.url))
    both = certs.trust("a", "b")
    certs.use("b")
    try:
        with httpx.Client(base_url=fw.base_url, verify=both, timeout=20) as http:
            r = http.post("/admin/reload")  # loopback, no admin key configured
        assert r.status_code == 200, r.text
        assert any("tls certificate for new connections" in line and "O=server-b" in line
                   for line in r.json()["reloaded"]), r.text
        assert serial_seen(fw.port, both) == certs.der("b")
    finally:
        certs.use("a")


def test_the_admin_session_cookie_is_secure_over_https(start_tls, certs, fake):
    cfg = tls_config(certs, fake.url)
    cfg["auth"] = {"keys": [{"id": "app", "key": "sk-client-0123"}], "admin_key": "admin-key-0123456789abcdef"}
    fw = start_tls(cfg)
    with httpx.Client(base_url=fw.base_url, verify=certs.trust("a"), timeout=20) as http:
        r = http.post("/login", data={"key": "admin-key-0123456789abcdef"})
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "; Secure" in cookie, cookie


@pytest.mark.parametrize("change,message", [
    ({"cert_file": "/nonexistent/cert.pem"}, "certificate file /nonexistent/cert.pem: No such file or directory"),
    ({"key_file": "KEY_OF_B"}, "does not match the certificate"),
    ({"cert_file": "GARBAGE"}, "holds no usable PEM certificate"),
    ({"client_auth": "require"}, "client_auth require needs client_ca_file"),
    ({"client_auth": "sometimes"}, "client_auth must be none, optional or require"),
    ({"client_ca_file": "CA", "client_auth": "none"}, "client_ca_file is set but client_auth is none"),
    ({"handshake_timeout": 0}, "handshake_timeout must be more than 0"),
    ({"key_fil": "x"}, "key_fil"),
])
def test_bad_tls_settings_stop_start_up_with_a_clear_message(flywheel_bin, certs, fake, tmp_path, change, message):
    from conftest import yaml_dump
    certs.use("a")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    substitutions = {"KEY_OF_B": str(certs.dir / "server-b.key"), "GARBAGE": str(garbage), "CA": str(certs.dir / "ca.pem")}
    tls = {k: substitutions.get(v, v) if isinstance(v, str) else v for k, v in change.items()}
    config = tls_config(certs, fake.url, **tls)
    config["log"] = {"path": str(tmp_path / "fw.db")}
    path = tmp_path / "fw.yaml"
    path.write_text(yaml_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env["OPENAI_API_KEY"] = "sk-upstream"
    p = subprocess.run([str(flywheel_bin), "serve", "--config", str(path)], capture_output=True, text=True, timeout=20,
                       env=env)
    assert p.returncode == 78, p.stderr
    assert message in p.stderr, p.stderr
