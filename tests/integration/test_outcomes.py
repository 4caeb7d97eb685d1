"""Integration tests of closedloop-outcomes against the real broker and the test
Salesforce (tests/fakes/salesforce.py). After every scenario the latest record per key
on <prefix>outcomes must equal the server's closed, non-deleted opportunities by Id,
outcome and SystemModstamp."""
import collections
import os
import signal
import subprocess
import time

import pytest

from outcomes_harness import (BIN_DIR, Env, expected_from, latest_by_key, load_jsonl,
                              opportunity, parse_ms, sf_dt)

DAY = 86400000
BASE = 1717200000000  # 2024-06-01T00:00:00Z


def fixture(n, start=BASE):
    """n opportunities, modstamps one minute apart; every 7th open, every 3rd lost,
    every 11th deleted."""
    recs = []
    for i in range(n):
        recs.append(opportunity(i, start + i * 60000, closed=(i % 7 != 0), won=(i % 3 != 0),
                                deleted=(i % 11 == 5), amount=100.0 + i))
    return recs


@pytest.fixture
def env_factory():
    envs = []

    def make(records, **kw):
        e = Env(records, **kw)
        envs.append(e)
        return e
    yield make
    for e in envs:
        e.close()


def by_id(records):
    return {r["Id"]: r for r in records}


def assert_topic_matches(env, server):
    got = env.read_topic()
    assert latest_by_key(got) == expected_from(server)
    return got


def published_versions(records):
    return collections.Counter((k, r["system_modstamp"]) for k, r, _ in records if r)


def test_initial_pull_of_generated_history_then_csv_export(env_factory, tmp_path):
    gen = os.path.join(BIN_DIR, "closedloop-gen")
    assert os.access(gen, os.X_OK), "closedloop-gen missing: " + gen
    out = tmp_path / "gen"
    subprocess.run([gen, "--out=%s" % out, "--opportunities=600", "--months=6", "--seed=7"],
                   check=True, capture_output=True)
    server = load_jsonl(str(out / "outcomes" / "opportunities.jsonl"))
    env = env_factory(list(server.values()))
    # One page of 600 records: the chunk of in-flight records grows while delivery
    # reports arrive (a regression test for reports addressing a reallocated array).
    r = env.run("--outcomes.batch.size=2000")
    assert r.returncode == 0, r.stderr
    got = assert_topic_matches(env, server)
    # Every record is one version: nothing published twice.
    assert max(published_versions(got).values()) == 1
    rec = next(v for _, v, _ in got if v)
    assert rec["source"] == "rest" and rec["currency"] == "USD"
    assert rec["days_to_close"] == rec["close_date"] - rec["created_date"]
    # One page of the configured batch size, over queryAll.
    st = env.stats()
    assert st["pages"] == 1
    assert "SystemModstamp >= 1970-01-01T00:00:00Z" in st["query_requests"][0]

    # The same closed opportunities from the generator's CSV export, into a new topic
    # prefix / state: same outcomes, source csv.
    env2 = env_factory([])
    r = env2.run("--outcomes.source=csv",
                 "--outcomes.csv.file=%s" % (out / "outcomes" / "closed_opportunities.csv"))
    assert r.returncode == 0, r.stderr
    got2 = env2.read_topic()
    latest2 = latest_by_key(got2)
    assert latest2 and all(v for _, v, _ in got2)
    assert {k: v for k, v in latest_by_key(got).items() if k in latest2} == latest2
    assert {v["source"] for _, v, _ in got2} == {"csv"}


def test_incremental_pull_lookback_reopen_delete(env_factory):
    records = fixture(500)
    server = by_id(records)
    env = env_factory(records)
    r = env.run("--outcomes.lookback.ms=%d" % (30 * DAY))
    assert r.returncode == 0, r.stderr
    assert_topic_matches(env, server)

    now = int(time.time() * 1000)
    changes = [
        opportunity(1, now - 5000, closed=True, won=False, amount=1.0),   # changed: WON -> LOST
        opportunity(2, now - 4000, closed=False),                          # re-opened
        opportunity(4, now - 3000, closed=True, won=True, deleted=True),   # deleted
        opportunity(9000, now - 2000, closed=True, won=True),              # new
    ]
    # A change committed late, with a SystemModstamp before the watermark but inside the
    # lookback: only the lookback finds it.
    late = opportunity(9001, now - 3 * DAY, closed=True, won=False)
    env.upsert(changes + [late])
    for c in changes + [late]:
        server[c["Id"]] = c
    r = env.run("--outcomes.lookback.ms=%d" % (30 * DAY))
    assert r.returncode == 0, r.stderr
    got = assert_topic_matches(env, server)
    # The lookback re-read nothing into a second copy.
    assert max(published_versions(got).values()) == 1
    tomb = [h for k, v, h in got if v is None]
    reasons = sorted(h["closedloop.retraction"].decode() for h in tomb)
    assert reasons == ["deleted", "reopened"]
    # The second pull asked for [watermark - lookback, now).
    q = env.stats()["query_requests"][-1]
    assert "SystemModstamp >= " in q and "ORDER BY SystemModstamp ASC, Id ASC" in q


def test_session_expiry_503_429_and_invalid_locator(env_factory):
    records = fixture(1200)
    server = by_id(records)
    env = env_factory(records)
    env.faults(expire_session_after_pages=2, fail_503=2, fail_429=1,
               invalid_locator_after_pages=3)
    r = env.run()
    assert r.returncode == 0, r.stderr
    assert_topic_matches(env, server)
    st = env.stats()
    assert st["errors_sent"].get("INVALID_SESSION_ID") == 1
    assert st["errors_sent"].get("INVALID_QUERY_LOCATOR") == 1
    assert st["errors_sent"].get("SERVER_UNAVAILABLE") == 2
    assert st["flows"].count("urn:ietf:params:oauth:grant-type:jwt-bearer") == 2
    assert "salesforce_session_expired" in r.stderr and "query_locator_invalid" in r.stderr
    # Restarting after INVALID_QUERY_LOCATOR re-read from the last acknowledged record,
    # and the dedupe kept the topic free of second copies.
    assert max(published_versions(env.read_topic()).values()) == 1


def test_malformed_json_is_an_error_naming_the_request(env_factory):
    records = fixture(700)
    server = by_id(records)
    env = env_factory(records)
    # Two good pages, then one cut off mid-JSON.
    env.faults(malformed_json_after_pages=2)
    r = env.run()
    assert r.returncode == 1, r.stderr
    assert "response is not valid JSON" in r.stderr
    assert "GET /services/data/v60.0/queryAll/" in r.stderr  # names the page's request
    first = env.read_topic()
    assert 0 < len(first) < len(expected_from(server))  # two pages in, not the rest
    # The position after the last good page was kept; the next run resumes there.
    r = env.run()
    assert r.returncode == 0, r.stderr
    assert "pull_resume" in r.stderr
    got = assert_topic_matches(env, server)
    assert max(published_versions(got).values()) == 1


def test_request_limit_and_quota_share_stop_with_state_kept(env_factory):
    records = fixture(600)
    server = by_id(records)
    env = env_factory(records)
    env.faults(limit_exceeded=True)
    r = env.run()
    assert r.returncode == 75, r.stderr
    assert "REQUEST_LIMIT_EXCEEDED" in r.stderr
    env.faults(limit_exceeded=False, api_used=0, api_max=3)
    # Quota share 0.5 of 3 calls: the worker stops by itself after two calls.
    r = env.run("--outcomes.api.quota.share=0.5")
    assert r.returncode == 75, r.stderr
    assert "API quota share reached" in r.stderr
    env.faults(api_used=0, api_max=15000)
    r = env.run()
    assert r.returncode == 0, r.stderr
    got = assert_topic_matches(env, server)
    assert max(published_versions(got).values()) == 1


def test_kill_9_mid_pull_then_restart(env_factory):
    records = fixture(3000)
    server = by_id(records)
    env = env_factory(records)
    env.faults(slow_ms=60)
    p = env.start()
    deadline = time.time() + 60
    while env.stats()["pages"] < 5:
        assert p.poll() is None, "worker exited early: " + open(env.log_path).read()
        assert time.time() < deadline
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    env.faults(slow_ms=0)
    r = env.run()
    assert r.returncode == 0, r.stderr
    assert "pull_resume" in r.stderr
    got = assert_topic_matches(env, server)
    dups = sum(c - 1 for c in published_versions(got).values())
    # At most the chunk in flight at the kill is published twice.
    assert dups <= 200


def test_bulk_backfill_and_fallback_to_rest(env_factory):
    records = fixture(800)
    server = by_id(records)
    env = env_factory(records)
    r = env.run("--outcomes.source=bulk")
    assert r.returncode == 0, r.stderr
    got = assert_topic_matches(env, server)
    assert {v["source"] for _, v, _ in got if v} == {"bulk"}
    assert env.stats()["bulk_jobs"] == 1

    env2 = env_factory(records)
    env2.faults(bulk_fail=True)
    r = env2.run("--outcomes.source=auto", "--outcomes.bulk.threshold=100")
    assert r.returncode == 0, r.stderr
    assert "bulk_fallback_to_rest" in r.stderr
    got = assert_topic_matches(env2, server)
    assert {v["source"] for _, v, _ in got if v} == {"rest"}


def test_client_credentials_secret_never_logged(env_factory):
    records = fixture(50)
    env = env_factory(records, fake_args=["--client-secret", "sekrit-value-123"])
    r = env.run("--salesforce.auth=client_credentials",
                "--salesforce.client.secret=sekrit-value-123", "--log.level=debug", auth="cc")
    assert r.returncode == 0, r.stderr
    assert "sekrit-value-123" not in r.stderr
    assert env.stats()["flows"] == ["client_credentials"]
    # A wrong secret is a clear error naming the token endpoint's answer.
    env2 = env_factory(records)
    r = env2.run("--salesforce.auth=client_credentials", "--salesforce.client.secret=wrong-one",
                 auth="cc")
    assert r.returncode == 1
    assert "invalid_client" in r.stderr and "wrong-one" not in r.stderr


def test_follow_mode_metrics_and_sigterm(env_factory):
    import random
    import urllib.request
    records = fixture(300)
    server = by_id(records)
    env = env_factory(records)
    port = random.randint(20000, 40000)
    p = subprocess.Popen(env.args("--outcomes.poll.interval.ms=200",
                                  "--http.listen=127.0.0.1:%d" % port),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        metrics = ""
        while "closedloop_outcomes_pulls_total{result=\"complete\"}" not in metrics:
            assert p.poll() is None, "worker exited: " + p.stderr.read()
            assert time.time() < deadline, "no completed pull: " + metrics
            time.sleep(0.2)
            try:
                metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                                 timeout=5).read().decode()
            except OSError:
                pass
        assert "closedloop_outcomes_watermark_timestamp_seconds" in metrics
        assert "closedloop_outcomes_records_total{action=\"publish\"}" in metrics
        # A change while following is picked up by a later poll.
        late = opportunity(7777, int(time.time() * 1000) - 1000, closed=True, won=False)
        env.upsert([late])
        server[late["Id"]] = late
        deadline = time.time() + 60
        while latest_by_key(env.read_topic()) != expected_from(server):
            assert time.time() < deadline, "follow mode did not pick up the change"
            time.sleep(0.5)
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(30)
    assert rc == 0, p.stderr.read()
