"""closedloop-refit against the real broker.

Scenario 1 (learn, then promote): labeled examples drawn from a true model whose
weights differ from the seed champion's go to `labeled`; the worker publishes the seed
CHAMPION v1 and, after the configured number of new outcomes, a CHALLENGER v2 whose
weights are closer to the truth than the champion's. The worker is stopped (SIGTERM,
exit 0) and restarted on the same LMDB state; new outcomes arrive whose snapshots carry
shadow scores of both v1 and v2 over more than the 30-day window; the worker promotes
v2 to CHAMPION and retires v1, each a record under its documented key.

Scenario 2 (champion already right): labels drawn from the seed model itself lead to a
REJECTED v2 with the validation numbers in its reason, and no promotion.

Records are written with fastavro in single-object encoding (an independent
implementation), and the weights topic is read back with fastavro.
"""
import json
import time

from refit_harness import (DAY_MS, MODEL, NAMES, SEED, TRUTH, WEIGHTS, WEIGHTS_FP, Refit, cli,  # noqa: F401
                           distance, draw, encode, env,
                           has, metric, produce, produce_raw, random, read_topic,
                           read_weights)


def test_challenger_then_promotion(env):
    prefix, state, tmp = env
    rng = random.Random(20261128)
    n1 = 3000
    produce(prefix, ((k, v) for k, v in draw(rng, TRUTH, -6.0, 0.12, 0, n1, 20000, 700, 2)))
    w = Refit(prefix, state, tmp / "refit1.log", "--refit.min.new.outcomes", str(n1),
              "--refit.max.weight.change", "0.3")
    port = w.port()
    recs = read_weights(prefix, has("CHALLENGER", 2), 180, w)
    seed = [r for k, r in recs if r["status"] == "CHAMPION" and r["version"] == 1]
    assert seed and seed[0]["weights"] == dict(zip(NAMES, SEED))
    assert [k for k, r in recs if r["version"] == 1] == [MODEL]
    key, chal = [(k, r) for k, r in recs if r["status"] == "CHALLENGER"][0]
    assert key == MODEL + "/challenger"
    assert chal["parent_version"] == 1
    assert abs(sum(chal["weights"].values()) - 1) <= 1e-9
    assert distance(chal["weights"], TRUTH) < distance(dict(zip(NAMES, SEED)), TRUTH) - 0.2, chal
    assert "beat champion v1" in chal["reason"]
    assert chal["training"]["n_won"] + chal["training"]["n_lost"] == 2 * n1
    assert chal["validation"] and all(f["auc"] is not None for f in chal["validation"])
    assert metric(port, "closedloop_refit_challenger_version") == 2
    assert metric(port, "closedloop_refit_training_opportunities") == n1
    assert metric(port, 'closedloop_refit_fits_total') >= 1
    w.stop()

    # The A/B window: snapshots shadow-scored by v1 and v2, 40 days of outcomes.
    cw = [chal["weights"][n] for n in NAMES]
    cal = (chal["calibration"]["intercept"], chal["calibration"]["slope"])
    n2 = 600
    produce(prefix, draw(rng, TRUTH, -6.0, 0.12, 100000, n2, 20800, 40, 1,
                         challenger=(2, cw, cal)))
    w = Refit(prefix, state, tmp / "refit2.log", "--refit.min.new.outcomes", str(n2))
    port = w.port()
    recs = read_weights(prefix, lambda r: has("CHAMPION", 2)(r) and has("RETIRED", 1)(r), 180, w)
    (k_champ, champ), = [(k, r) for k, r in recs if r["status"] == "CHAMPION" and r["version"] == 2]
    (k_ret, ret), = [(k, r) for k, r in recs if r["status"] == "RETIRED"]
    assert k_champ == MODEL and k_ret == MODEL + "/retired"
    assert ret["version"] == 1 and "superseded by v2" in ret["reason"]
    assert champ["weights"] == chal["weights"]
    cmp = champ["comparison"]
    assert cmp["champion_version"] == 1 and cmp["n_paired"] == n2
    assert cmp["delta_auc"] > 0 and cmp["p_value"] < 0.05
    assert "promoted after the A/B window" in champ["reason"]
    assert metric(port, "closedloop_refit_champion_version") == 2
    assert metric(port, "closedloop_refit_challenger_version") == 0
    w.stop()

    # The operator's view and hand: show, a promote with nothing to promote, a rollback.
    shown = json.loads(cli(prefix, "weights", "show", "--output", "json").stdout)
    assert shown["champion"]["version"] == 2 and shown["retired"]["version"] == 1
    assert shown["challenger"] is None and shown["max_version"] == 2
    r = cli(prefix, "promote", check=False)
    assert r.returncode == 1 and "no live challenger" in r.stderr
    cli(prefix, "rollback", "--reason", "incident 42")
    shown = json.loads(cli(prefix, "weights", "show", "--output", "json").stdout)
    champ3 = shown["champion"]
    assert champ3["version"] == 3 and champ3["parent_version"] == {"long": 2}
    assert champ3["weights"] == dict(zip(NAMES, SEED))
    assert "rollback to the weights of v1" in champ3["reason"] and "incident 42" in champ3["reason"]
    assert shown["retired"]["version"] == 2
    text = cli(prefix, "weights", "show").stdout
    assert "champion   v3 CHAMPION (parent v2)" in text


def test_champion_already_right_is_rejected(env):
    prefix, state, tmp = env
    rng = random.Random(7)
    n1 = 3000
    records = draw(rng, SEED, -3.0, 0.06, 0, n1, 20000, 700, 1)
    produce(prefix, records[:10])
    produce_raw(prefix, b"006Rpoison", b"\xc3\x01 not an avro datum")
    produce(prefix, records[10:])
    w = Refit(prefix, state, tmp / "refit.log", "--refit.min.new.outcomes", str(n1))
    port = w.port()
    recs = read_weights(prefix, has("REJECTED", 2), 180, w)
    assert metric(port, "closedloop_refit_dlq_total") == 1
    (dead,) = read_topic(prefix + "dlq", 1)
    headers = dict(dead.headers())
    assert dead.key() == b"006Rpoison" and headers["worker"] == b"refit"
    assert headers["source.topic"] == (prefix + "labeled").encode()
    (key, rej), = [(k, r) for k, r in recs if r["status"] == "REJECTED"]
    assert key == MODEL + "/challenger"
    assert "did not beat champion v1" in rej["reason"] and "AUC" in rej["reason"]
    assert not any(r["status"] == "CHALLENGER" for _, r in recs)
    assert not any(r["status"] == "CHAMPION" and r["version"] == 2 for _, r in recs)
    w.stop()


def test_trial_expires_without_shadow_scores(env):
    """A challenger published 100 days ago whose trial never gets paired outcomes (the
    snapshots carry no shadow scores of it) is rejected once refit.max.trial.days of wall
    clock have passed, instead of blocking every refit forever."""
    prefix, state, tmp = env
    now = int(time.time() * 1000)
    challenger = {
        "model": MODEL, "version": 2, "parent_version": 1, "status": "CHALLENGER",
        "created_at": now - 100 * DAY_MS, "weights": dict(zip(NAMES, TRUTH)),
        "stage_weights": [], "calibration": {"intercept": -6.0, "slope": 0.12},
        "bands": {"high": 70.0, "medium": 40.0}, "components": [], "training": None,
        "validation": [], "comparison": None, "reason": "published by the test",
    }
    produce_raw(prefix, (MODEL + "/challenger").encode(),
                encode(WEIGHTS, WEIGHTS_FP, challenger), topic="weights")
    rng = random.Random(5)
    produce(prefix, draw(rng, TRUTH, -6.0, 0.12, 0, 200, 20000, 100, 1))
    w = Refit(prefix, state, tmp / "refit.log", "--refit.min.new.outcomes", "200")
    w.port()
    recs = read_weights(prefix, has("REJECTED", 2), 120, w)
    (key, rej), = [(k, r) for k, r in recs if r["status"] == "REJECTED"]
    assert key == MODEL + "/challenger"
    assert "trial expired after 100 days" in rej["reason"], rej["reason"]
    assert "0 paired outcomes" in rej["reason"]
    # The seed was published as CHAMPION v1 (the topic had no champion) below the live
    # challenger, which it must not end; nothing was promoted.
    assert [r["version"] for _, r in recs if r["status"] == "CHAMPION"] == [1]
    assert not any(r["status"] == "CHAMPION" and r["version"] == 2 for _, r in recs)
    w.stop()
