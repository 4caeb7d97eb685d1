"""docker-compose.yml is correct by construction (no Docker engine runs here).

Checks what can be checked without running containers:
- the file parses and has the services SPEC §5 asks for, with healthchecks, named
  volumes for worker state, and workers built from deploy/Dockerfile;
- every CLOSEDLOOP_* variable a worker service sets is an option that worker accepts:
  the same binary, given the same environment, prints its effective configuration
  with that variable as the source, and warns about nothing;
- every command a service runs is an executable the build produces;
- the kafka service's KAFKA_* settings equal deploy/kafka/broker.properties, the file
  the local broker of the tests and benchmarks runs with.
"""
import os
import re
import subprocess

import pytest
import yaml

SRC = os.environ.get("CL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CL_BIN_DIR", os.path.join(SRC, "build", "bin"))
WORKERS = ["snapshot", "outcomes", "join", "metrics", "refit"]


@pytest.fixture(scope="module")
def compose():
    with open(os.path.join(SRC, "docker-compose.yml")) as f:
        return yaml.safe_load(f)


def test_services_present(compose):
    services = compose["services"]
    for name in ["kafka", "schema-registry", "topic-init"] + WORKERS:
        assert name in services, "service %s missing" % name
    assert services["kafka"]["image"].startswith("apache/kafka:")
    for w in WORKERS:
        s = services[w]
        assert s["build"]["dockerfile"] == "deploy/Dockerfile"
        assert "8080/healthz" in " ".join(s["healthcheck"]["test"])
        vols = [v.split(":")[0] for v in s["volumes"]]
        assert any(v in compose["volumes"] for v in vols), "%s has no named state volume" % w
    assert os.path.exists(os.path.join(SRC, "deploy", "Dockerfile"))


@pytest.mark.parametrize("service", WORKERS + ["topic-init"])
def test_environment_is_accepted(compose, service):
    s = compose["services"][service]
    exe = s["command"][0]
    path = os.path.join(BIN, exe)
    assert os.path.exists(path), "%s runs %s, which the build does not produce" % (service, exe)
    env = {k: str(v) for k, v in s["environment"].items()}
    # ${VAR:-default} is compose interpolation: use the default.
    env = {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", v) for k, v in env.items()}
    args = [path] + [a for a in s["command"][1:] if a.startswith("--")]
    if exe == "closedloop":
        args = [path, "topics", "create", "--help"]
    else:
        args.append("--print-config")
    run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    run_env.update(env)
    out = subprocess.run(args, env=run_env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, "%s: %s" % (service, out.stderr)
    assert "config_env_ignored" not in out.stderr, out.stderr
    if exe != "closedloop":
        for var in env:
            if var.startswith("CLOSEDLOOP_"):
                assert "env %s" % var in out.stdout, "%s: %s is not an option of %s" % (service, var, exe)


def test_broker_settings_match_local_broker(compose):
    props = {}
    with open(os.path.join(SRC, "deploy", "kafka", "broker.properties")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                k, v = line.split("=", 1)
                props[k.strip()] = v.strip()
    env = compose["services"]["kafka"]["environment"]
    for k, v in props.items():
        var = "KAFKA_" + k.upper().replace(".", "_")
        assert var in env, "broker.properties has %s but docker-compose.yml has no %s" % (k, var)
        assert str(env[var]) == v, "%s: compose %s, local broker %s" % (k, env[var], v)
