"""The deployment files are checked, not just written: the Kubernetes manifests pass kubernetes-validate's
strict schema check and their configuration starts the daemon; the systemd unit passes `systemd-analyze verify`
and its `systemd-analyze security` exposure stays low. Each check skips when its tool is missing; none needs
the network."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT
from helpers import httpx, poll

DEPLOY = REPO_ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "flywheel.service"
MAX_EXPOSURE = 2.0   # systemd's scale: 0 (locked down) .. 10 (unprotected); 1.1 when written


def _documents(path):
    import yaml  # PyYAML comes with kubernetes-validate
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_kubernetes_manifests_pass_the_strict_schema_check():
    if not shutil.which("kubernetes-validate"):
        pytest.skip("kubernetes-validate is not installed (scripts/python-deps installs it)")
    files = sorted(str(p) for p in (DEPLOY / "kubernetes").glob("*.yaml"))
    p = subprocess.run(["kubernetes-validate", "--strict", *files], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    passed = set(re.findall(r"passed for resource (\S+)", p.stdout + p.stderr))
    assert {"configmap/flywheel-config", "secret/flywheel-secrets", "persistentvolumeclaim/flywheel-data",
            "deployment/flywheel", "service/flywheel"} <= passed, p.stdout + p.stderr


def test_kubernetes_deployment_probes_health_runs_unprivileged_and_keeps_the_log_on_its_volume():
    pytest.importorskip("yaml")
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _documents(DEPLOY / "kubernetes" / "flywheel.yaml")}
    pod = docs[("Deployment", "flywheel")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["flywheel-data"] and ("PersistentVolumeClaim", "flywheel-data") in docs
    annotations = docs[("Deployment", "flywheel")]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_configmaps_configuration_starts_the_daemon(flywheel_bin, tmp_path):
    pytest.importorskip("yaml")
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _documents(DEPLOY / "kubernetes" / "flywheel.yaml")}
    config = tmp_path / "flywheel.yaml"
    config.write_text(docs[("ConfigMap", "flywheel-config")]["data"]["flywheel.yaml"])
    env = dict(docs[("Secret", "flywheel-secrets")]["stringData"])
    err = tmp_path / "stderr"
    with open(err, "wb") as out:
        proc = subprocess.Popen([str(flywheel_bin), "serve", "--config", str(config), "--listen", "127.0.0.1:0",
                                 "--db", str(tmp_path / "fw.db")], stdout=subprocess.DEVNULL, stderr=out, env=env)
        try:
            port = poll(lambda: (re.search(r"listening on http://127\.0\.0\.1:(\d+)", err.read_text()) or
                                 (proc.poll() is not None and pytest.fail(err.read_text()))), timeout=20,
                        what="the daemon to listen").group(1)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        finally:
            proc.terminate()
            assert proc.wait(30) == 0
    assert '"msg":"request"' in err.read_text() and "replace-me" not in err.read_text()


def test_systemd_unit_verifies_and_its_sandbox_scores_low(flywheel_bin, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    # verify checks that ExecStart's binary exists: point it at the one under test.
    unit = tmp_path / "flywheel.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/flywheel", str(flywheel_bin)))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    p = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for flywheel\.service: (\d+\.\d+)", p.stdout)
    assert m, p.stdout + p.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, p.stdout
    text = UNIT.read_text()
    for setting in ("DynamicUser=yes", "StateDirectory=flywheel", "ProtectSystem=strict", "ProtectHome=yes",
                    "PrivateTmp=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX", "SystemCallFilter=@system-service",
                    "MemoryDenyWriteExecute=yes", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert setting in text, setting
