"""Upstreams over HTTPS: libcurl verifies certificates, against a configured CA bundle or the system's."""
from __future__ import annotations

import subprocess

import openai
import pytest

from conftest import upstream_cfg
from fake_upstream import FakeUpstream
from helpers import user_msg


@pytest.fixture
def tls_upstream(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with FakeUpstream(tls=(str(cert), str(key))) as fake:
        yield fake, cert


def tls_config(url: str, **tls) -> dict:
    cfg = {"server": {"listen": "127.0.0.1:0"},
           "upstreams": [upstream_cfg("secure", url, retries=0)],
           "routes": [{"model": "*", "upstreams": ["secure"]}]}
    if tls:
        cfg["upstream_tls"] = tls
    return cfg


def test_https_upstream_verified_with_configured_ca_bundle(start_flywheel, tls_upstream):
    fake, cert = tls_upstream
    assert fake.url.startswith("https://")
    fw = start_flywheel(tls_config(fake.url, ca_bundle=str(cert)))
    r = fw.client().chat.completions.create(model="gpt-4o-mini", messages=user_msg("over tls"))
    assert r.choices[0].message.content == "echo: over tls"
    stream = fw.client().chat.completions.create(model="gpt-4o-mini", messages=user_msg("tls stream"), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "echo: tls stream"


def test_untrusted_certificate_is_refused_with_502(start_flywheel, tls_upstream):
    fake, _ = tls_upstream
    fw = start_flywheel(tls_config(fake.url))
    with pytest.raises(openai.InternalServerError) as ei:
        fw.client().chat.completions.create(model="gpt-4o-mini", messages=user_msg("x"))
    assert ei.value.status_code == 502
    assert not fake.requests_to("/chat/completions"), "no request may reach an unverified upstream"
