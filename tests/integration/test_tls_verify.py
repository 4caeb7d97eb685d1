"""TLS certificate verification of the two HTTP clients, against https fakes.

Salesforce (closedloop-outcomes against tests/fakes/salesforce.py --tls-cert) and the
schema registry (closedloop-avro encode against tests/fakes/schema_registry.py
--tls-cert), each with a throwaway self-signed certificate for 127.0.0.1:
  - by default an untrusted certificate is refused: a non-zero exit and an error naming
    the host and the certificate, and no credential ever reaches the server;
  - the CA option (salesforce.ca.file, schema.registry.ssl.ca.location) makes it work;
  - the CA option does not excuse a certificate for another host name (VERIFYHOST);
  - the explicit salesforce.tls.verify=false / schema.registry.ssl.verify=false makes it
    work and is logged once, as a WARN naming the setting and its source.
"""
import os
import re
import ssl
import subprocess
import sys
import tempfile
import urllib.request
import json

import pytest

from outcomes_harness import Env, expected_from, latest_by_key, opportunity
from tls_certs import make_self_signed

SOURCE_DIR = os.environ.get("CL_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN_DIR = os.environ.get("CL_BIN_DIR") or os.path.join(SOURCE_DIR, "build", "bin")
AVRO = os.path.join(BIN_DIR, "closedloop-avro")
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "fakes"))
from schema_registry import RegistryProcess  # noqa: E402

BASE = 1717200000000


@pytest.fixture(scope="module")
def certs():
    d = tempfile.mkdtemp(prefix="cl-tls-")
    good = make_self_signed(d, "server")                                # for 127.0.0.1
    other = make_self_signed(d, "other", san="DNS:other.example.com")  # another host's
    yield {"good": good, "other": other, "dir": d}
    import shutil
    shutil.rmtree(d, ignore_errors=True)


def warn_lines(text):
    return [l for l in text.splitlines() if "tls_verification_disabled" in l]


# --- Salesforce ----------------------------------------------------------------------

class TlsEnv(Env):
    """The outcomes harness's world with the fake Salesforce serving https."""

    def __init__(self, records, cert, key):
        super().__init__(records, fake_args=["--tls-cert", cert, "--tls-key", key])
        self.url = "https://127.0.0.1:%d" % self.port
        self.ctx = ssl.create_default_context(cafile=cert)
        self.ctx.check_hostname = False  # the control calls also serve the "other" cert
        self.ctx.verify_mode = ssl.CERT_NONE

    def control(self, path, body=None):
        req = urllib.request.Request(self.url + "/__fake/" + path,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     method="POST" if body is not None else "GET")
        with urllib.request.urlopen(req, timeout=10, context=self.ctx) as r:
            return json.loads(r.read())


@pytest.fixture
def sf_env_factory():
    envs = []

    def make(cert, key, n=40):
        e = TlsEnv([opportunity(i, BASE + i * 60000, won=i % 2 == 0) for i in range(n)], cert, key)
        envs.append(e)
        return e
    yield make
    for e in envs:
        e.close()


def server_of(env):
    return {r["Id"]: r for r in (opportunity(i, BASE + i * 60000, won=i % 2 == 0)
                                 for i in range(40))}


def test_salesforce_untrusted_certificate_is_refused_by_default(certs, sf_env_factory):
    env = sf_env_factory(*certs["good"])
    r = env.run()
    assert r.returncode == 1, r.stderr
    # The error names the endpoint's host and says what was wrong with it.
    assert "https://127.0.0.1:%d/services/oauth2/token" % env.port in r.stderr, r.stderr
    assert "certificate" in r.stderr and "salesforce.ca.file" in r.stderr, r.stderr
    assert not warn_lines(r.stderr)
    # The JWT assertion was never sent: the connection ended in the handshake.
    st = env.stats()
    assert st["token_requests"] == 0 and st["api_calls"] == 0
    assert env.read_topic() == []


def test_salesforce_ca_file_makes_the_certificate_trusted(certs, sf_env_factory):
    cert, key = certs["good"]
    env = sf_env_factory(cert, key)
    r = env.run("--salesforce.ca.file=" + cert)
    assert r.returncode == 0, r.stderr
    assert latest_by_key(env.read_topic()) == expected_from(server_of(env))
    assert not warn_lines(r.stderr)
    assert env.stats()["token_requests"] == 1


def test_salesforce_ca_file_does_not_excuse_another_hosts_certificate(certs, sf_env_factory):
    cert, key = certs["other"]
    env = sf_env_factory(cert, key)
    r = env.run("--salesforce.ca.file=" + cert)
    assert r.returncode == 1, r.stderr
    assert "127.0.0.1" in r.stderr and "certificate" in r.stderr, r.stderr
    assert "certificate subject name" in r.stderr, r.stderr  # host name check, not the CA
    assert env.stats()["token_requests"] == 0


def test_salesforce_verify_false_works_and_warns_once(certs, sf_env_factory):
    cert, key = certs["other"]  # wrong host name and untrusted: both checks are off
    env = sf_env_factory(cert, key)
    r = env.run("--salesforce.tls.verify=false")
    assert r.returncode == 0, r.stderr
    assert latest_by_key(env.read_topic()) == expected_from(server_of(env))
    st = env.stats()
    assert st["token_requests"] == 1 and st["api_calls"] >= 1
    lines = warn_lines(r.stderr)
    assert len(lines) == 1, r.stderr  # once at start, not per request
    assert "level=warn" in lines[0] and "setting=salesforce.tls.verify" in lines[0]
    assert 'source="flag --salesforce.tls.verify"' in lines[0], lines[0]

    # The same switch from the environment names the environment as its source.
    environ = dict(os.environ, CLOSEDLOOP_SALESFORCE_TLS_VERIFY="false")
    p = subprocess.run(env.args() + ["--once"], capture_output=True, text=True, timeout=120,
                       env=environ)
    assert p.returncode == 0, p.stderr
    lines = warn_lines(p.stderr)
    assert len(lines) == 1 and "CLOSEDLOOP_SALESFORCE_TLS_VERIFY" in lines[0], p.stderr


def test_salesforce_plain_http_stays_loopback_only(certs):
    # The https work did not loosen the rule that tokens travel over plain http only to
    # loopback test servers.
    worker = os.path.join(BIN_DIR, "closedloop-outcomes")
    r = subprocess.run([worker, "--salesforce.login.url=http://salesforce.example.com",
                        "--salesforce.client.id=x", "--salesforce.auth=client_credentials",
                        "--salesforce.client.secret=y", "--salesforce.tls.verify=false",
                        "--state.dir=" + os.path.join(certs["dir"], "state"),
                        "--http.listen=127.0.0.1:0", "--once"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "must be an https URL" in r.stderr, r.stderr


# --- schema registry -----------------------------------------------------------------

SCHEMA = {"type": "record", "name": "TlsProbe", "namespace": "closedloop.test",
          "fields": [{"name": "a", "type": "string"}]}


@pytest.fixture
def registry(certs):
    regs = []

    def make(which):
        cert, key = certs[which]
        reg = RegistryProcess("--tls-cert", cert, "--tls-key", key)
        if which == "other":  # the control client must not check the host name either
            reg.ssl_context.check_hostname = False
            reg.ssl_context.verify_mode = ssl.CERT_NONE
        regs.append(reg)
        return reg
    yield make
    for r in regs:
        r.stop()


def encode(reg, schema_file, *extra, env=None):
    assert os.access(AVRO, os.X_OK), "closedloop-avro not built at %s" % AVRO
    return subprocess.run([AVRO, "encode", "--schema-file=" + schema_file, "--topic=tlsprobe",
                           "--schema.registry.url=" + reg.url, "--schema.registry.retries=0",
                           *extra],
                          input=b'{"a": "hello"}\n', capture_output=True, timeout=60, env=env)


@pytest.fixture
def schema_file(tmp_path):
    p = tmp_path / "TlsProbe.avsc"
    p.write_text(json.dumps(SCHEMA))
    return str(p)


def confluent_id(out):
    assert len(out) > 9, out
    n = int.from_bytes(out[:4], "big")
    assert n == len(out) - 4 and out[4] == 0, out
    return int.from_bytes(out[5:9], "big")


def test_registry_untrusted_certificate_is_refused_by_default(registry, schema_file):
    reg = registry("good")
    r = encode(reg, schema_file)
    err = r.stderr.decode()
    assert r.returncode != 0 and r.stdout == b"", err
    assert "https://127.0.0.1:%s" % reg.url.rsplit(":", 1)[1] in err, err
    assert "certificate" in err and "schema.registry.ssl.ca.location" in err, err
    assert not warn_lines(err)
    assert reg.requests() == []  # nothing got past the handshake


def test_registry_ca_location_makes_the_certificate_trusted(registry, schema_file, certs):
    reg = registry("good")
    r = encode(reg, schema_file, "--schema.registry.ssl.ca.location=" + certs["good"][0])
    assert r.returncode == 0, r.stderr.decode()
    assert reg.subjects() == ["tlsprobe-value"]
    assert json.loads(reg.schema(confluent_id(r.stdout))) == SCHEMA
    assert not warn_lines(r.stderr.decode())


def test_registry_ca_location_does_not_excuse_another_hosts_certificate(registry, schema_file,
                                                                        certs):
    reg = registry("other")
    r = encode(reg, schema_file, "--schema.registry.ssl.ca.location=" + certs["other"][0])
    err = r.stderr.decode()
    assert r.returncode != 0, err
    assert "127.0.0.1" in err and "certificate subject name" in err, err  # host name check
    assert reg.requests() == []


def test_registry_verify_false_works_and_warns_once(registry, schema_file):
    reg = registry("other")
    r = encode(reg, schema_file, "--schema.registry.ssl.verify=false")
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert reg.subjects() == ["tlsprobe-value"]
    confluent_id(r.stdout)
    lines = warn_lines(err)
    assert len(lines) == 1, err
    assert "level=warn" in lines[0] and "setting=schema.registry.ssl.verify" in lines[0]
    assert 'source="flag --schema.registry.ssl.verify"' in lines[0], lines[0]
    # From a config file, the file is named as the source.
    cfg = os.path.join(os.path.dirname(schema_file), "avro.conf")
    with open(cfg, "w") as f:
        f.write("schema.registry.ssl.verify = false\n")
    r = encode(reg, schema_file, "--config=" + cfg)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    lines = warn_lines(err)
    assert len(lines) == 1 and cfg in lines[0], err
