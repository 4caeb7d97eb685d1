"""No secret of the outcomes worker or the schema registry client reaches a log line or
/metrics (issue 9, Security).

Planted, unique per run: the Salesforce client secret, the refresh token, the JWT
private key (every base64 line of its PEM body), the access tokens the test Salesforce
issues (read back from its /__fake/stats, including the one re-issued after a forced
session expiry), and the schema registry's basic-auth password and bearer token. The
worker runs at --log.level=debug in follow mode, in the JWT and the client-credentials
flows, talking to a registry that requires auth; its /metrics is scraped after a
re-authentication. The refresh-token flow, rejected credentials and closedloop-avro
against an authenticating registry (right and wrong credentials, also as URL userinfo)
are checked the same way. Everything the processes wrote - stdout, stderr, /metrics -
is searched for every planted value.
"""
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from outcomes_harness import BIN_DIR, SOURCE_DIR, Env, opportunity

sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "fakes"))
from schema_registry import RegistryProcess  # noqa: E402

AVRO = os.path.join(BIN_DIR, "closedloop-avro")
BASE = 1717200000000


def planted(kind):
    return "Pl4nted-%s-%s" % (kind, uuid.uuid4().hex)


def pem_body_lines(path):
    with open(path) as f:
        lines = [l.strip() for l in f if l.strip() and not l.startswith("-----")]
    assert len(lines) > 10, "expected a PEM private key in %s" % path
    return lines


def assert_absent(secrets, **texts):
    """Each of `texts` (name -> what a process wrote) holds none of `secrets`."""
    assert secrets and all(len(s) >= 16 for s in secrets), secrets
    for name, text in texts.items():
        assert text, "%s is empty: nothing was checked" % name
        for s in secrets:
            assert s not in text, "secret %s... appears in %s:\n%s" % (
                s[:12], name, next(l for l in text.splitlines() if s in l))


@pytest.fixture
def world():
    made = []

    def make(**kw):
        env = Env([opportunity(i, BASE + i * 60000, won=i % 3 != 0) for i in range(120)], **kw)
        made.append(env)
        return env
    yield make
    for env in made:
        env.close()


@pytest.fixture
def registry_factory():
    regs = []

    def make(*args):
        reg = RegistryProcess(*args)
        regs.append(reg)
        return reg
    yield make
    for reg in regs:
        reg.stop()


def registered(reg, subject):
    """The registry answered a registration under subject (the fake's API needs the
    credentials; its request log does not)."""
    return "POST /subjects/%s/versions" % subject in reg.requests()


def follow_run(env, extra, auth):
    """Runs the worker in follow mode until a pull completed, then forces a session
    expiry and waits for the re-authenticated pull; returns (log text, /metrics text)."""
    log_path = os.path.join(env.dir, "follow-%s.log" % uuid.uuid4().hex[:6])
    with open(log_path, "w") as log:
        p = subprocess.Popen(env.args("--outcomes.poll.interval.ms=200", "--log.level=debug",
                                      *extra, auth=auth),
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        port = None
        while port is None:
            assert p.poll() is None, "worker exited:\n" + open(log_path).read()[-3000:]
            assert time.time() < deadline, "worker did not listen:\n" + open(log_path).read()
            m = re.search(r"event=http_listening .*port=(\d+)", open(log_path).read())
            port = int(m.group(1)) if m else None
            time.sleep(0.1)
        url = "http://127.0.0.1:%d/metrics" % port

        def complete_pulls():
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            m = re.search(r'closedloop_outcomes_pulls_total\{result="complete"\} (\d+)', text)
            return (int(m.group(1)) if m else 0), text

        while complete_pulls()[0] < 1:
            assert p.poll() is None, "worker exited:\n" + open(log_path).read()[-3000:]
            assert time.time() < deadline, "no completed pull:\n" + open(log_path).read()[-3000:]
            time.sleep(0.2)
        # Every token issued so far becomes invalid: the next poll gets 401
        # INVALID_SESSION_ID and authenticates again, so a second access token is
        # issued (and must stay as invisible as the first).
        env.control("expire_tokens", {})
        env.upsert([opportunity(5000, int(time.time() * 1000) - 2000, won=True)])
        done_before = complete_pulls()[0]
        while env.stats()["token_requests"] < 2 or complete_pulls()[0] <= done_before:
            assert p.poll() is None, "worker exited:\n" + open(log_path).read()[-3000:]
            assert time.time() < deadline, "no re-authenticated pull:\n" + \
                open(log_path).read()[-3000:]
            time.sleep(0.2)
        metrics = complete_pulls()[1]
        assert "closedloop_outcomes_records_total" in metrics, metrics
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(60)
    text = open(log_path).read()
    assert rc == 0, text[-3000:]
    assert "salesforce_session_expired" in text or "INVALID_SESSION_ID" in text, text[-3000:]
    return text, metrics


def test_jwt_flow_with_registry_basic_auth(world, registry_factory):
    password = planted("regpw")
    reg = registry_factory("--basic-auth", "svc-closedloop:" + password)
    env = world()
    log, metrics = follow_run(
        env, ["--schema.registry.url=" + reg.url,
              "--schema.registry.basic.auth.user.info=svc-closedloop:" + password], auth="jwt")
    st = env.stats()
    tokens = st["access_tokens"]
    assert len(tokens) >= 2 and "urn:ietf:params:oauth:grant-type:jwt-bearer" in st["flows"]
    assert registered(reg, env.topic + "-value")  # the registry credentials were used
    assert log.count("event=salesforce_authenticated") >= 2, log[-3000:]
    assert_absent(tokens + [password] + pem_body_lines(env.key), log=log, metrics=metrics)


def test_client_credentials_flow_with_registry_bearer_token(world, registry_factory):
    secret, bearer = planted("cs"), planted("bearer")
    reg = registry_factory("--bearer-token", bearer)
    env = world(fake_args=["--client-secret", secret])
    log, metrics = follow_run(
        env, ["--salesforce.auth=client_credentials", "--salesforce.client.secret=" + secret,
              "--schema.registry.url=" + reg.url, "--schema.registry.bearer.token=" + bearer],
        auth="cc")
    st = env.stats()
    assert set(st["flows"]) == {"client_credentials"} and len(st["access_tokens"]) >= 2
    assert registered(reg, env.topic + "-value")
    assert_absent(st["access_tokens"] + [secret, bearer], log=log, metrics=metrics)


def test_refresh_token_flow_and_rejected_credentials(world):
    refresh, secret = planted("rt"), planted("cs")
    env = world(fake_args=["--refresh-token", refresh, "--client-secret", secret])
    r = env.run("--salesforce.auth=refresh_token", "--salesforce.refresh.token=" + refresh,
                "--salesforce.client.secret=" + secret, "--log.level=debug", auth="rt")
    assert r.returncode == 0, r.stderr
    st = env.stats()
    assert st["flows"] == ["refresh_token"] and len(st["access_tokens"]) == 1
    assert_absent(st["access_tokens"] + [refresh, secret], stderr=r.stderr + r.stdout)

    # Wrong credentials: the error names the token endpoint's answer, never the value.
    wrong_rt, wrong_cs = planted("wrongrt"), planted("wrongcs")
    r = env.run("--salesforce.auth=refresh_token", "--salesforce.refresh.token=" + wrong_rt,
                "--log.level=debug", auth="rt")
    assert r.returncode == 1 and "invalid_grant" in r.stderr, r.stderr
    assert_absent([wrong_rt], stderr=r.stderr + r.stdout)
    r = env.run("--salesforce.auth=client_credentials", "--salesforce.client.secret=" + wrong_cs,
                "--log.level=debug", auth="cc")
    assert r.returncode == 1 and "invalid_client" in r.stderr, r.stderr
    assert_absent([wrong_cs], stderr=r.stderr + r.stdout)


# --- closedloop-avro against a registry that requires auth ---------------------------

def encode(url, schema_file, *extra):
    assert os.access(AVRO, os.X_OK), "closedloop-avro not built at %s" % AVRO
    return subprocess.run([AVRO, "encode", "--schema-file=" + schema_file, "--topic=secrets",
                           "--schema.registry.url=" + url, "--schema.registry.retries=0",
                           "--log.level=debug", *extra],
                          input=b'{"a": "hello"}\n', capture_output=True, timeout=60)


@pytest.fixture
def schema_file(tmp_path):
    p = tmp_path / "Probe.avsc"
    p.write_text('{"type":"record","name":"Probe","fields":[{"name":"a","type":"string"}]}')
    return str(p)


def test_registry_basic_auth_and_bearer_never_logged(registry_factory, schema_file):
    password, bearer = planted("regpw"), planted("bearer")
    basic = registry_factory("--basic-auth", "svc:" + password)
    r = encode(basic.url, schema_file, "--schema.registry.basic.auth.user.info=svc:" + password)
    assert r.returncode == 0 and r.stdout, r.stderr.decode()
    assert registered(basic, "secrets-value")
    assert_absent([password], stderr=r.stderr.decode() + " ")

    tok = registry_factory("--bearer-token", bearer)
    r = encode(tok.url, schema_file, "--schema.registry.bearer.token=" + bearer)
    assert r.returncode == 0 and r.stdout, r.stderr.decode()
    assert_absent([bearer], stderr=r.stderr.decode() + " ")

    # Rejected credentials: a 401 naming the options to check, not their values; also
    # when the password comes as userinfo in the URL.
    wrong_pw, wrong_bearer = planted("wrongpw"), planted("wrongbearer")
    for reg, args in ((basic, ["--schema.registry.basic.auth.user.info=svc:" + wrong_pw]),
                      (tok, ["--schema.registry.bearer.token=" + wrong_bearer])):
        r = encode(reg.url, schema_file, *args)
        err = r.stderr.decode()
        assert r.returncode != 0 and "HTTP 401" in err, err
        assert "schema.registry.basic.auth.user.info" in err, err
        assert_absent([wrong_pw, wrong_bearer], stderr=err)
    url = basic.url.replace("http://", "http://svc:%s@" % wrong_pw)
    r = encode(url, schema_file)
    err = r.stderr.decode()
    assert r.returncode != 0 and "HTTP 401" in err, err
    assert basic.url in err  # the URL is named, without its userinfo
    assert_absent([wrong_pw], stderr=err)
