"""Learned factors end to end (issue 10) on the real broker.

Labeled examples are drawn from a model whose six components already carry the seed's
weights, plus an owner effect and a lead-source effect, and a region attribute with no
effect. closedloop-refit, with those three candidates, must adopt exactly
owner_id_win_rate and lead_source_win_rate (not region), publish a CHALLENGER whose
definitions carry their category tables, and its rolling-origin validated AUC must be
within 0.01 of scikit-learn's LogisticRegression fitted offline on the same candidate
features (point-in-time win rates computed here, independently, by the documented rule)
over the same folds.
"""
import datetime
import math

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from refit_harness import (DAY_MS, NAMES, SEED, Refit, env, example, produce,  # noqa: F401
                           random, read_weights, score_of)

OWNERS = [f"005O{i:014d}" for i in range(30)]
SOURCES = ["Web", "Partner", "Event", "Outbound", "Referral", "Trial"]
REGIONS = ["EMEA", "AMER", "APAC", "LATAM"]
SMOOTHING, MIN_SUPPORT = 20.0, 10


def day_of(v):
    if isinstance(v, datetime.datetime):
        return int(round(v.timestamp() * 1000)) // DAY_MS
    return v // DAY_MS


def point_in_time(rows, key):
    """Smoothed win rate of rows[i][key] from outcomes closed strictly before row i's
    snapshot day (one snapshot per opportunity here)."""
    order = sorted(range(len(rows)), key=lambda i: rows[i]["close"])
    out = [0.0] * len(rows)
    by_snap = sorted(range(len(rows)), key=lambda i: rows[i]["snap"])
    n_c, w_c = {}, {}
    total = won = 0
    p = 0
    for i in by_snap:
        while p < len(order) and rows[order[p]]["close"] < rows[i]["snap"]:
            r = rows[order[p]]
            total += 1
            won += r["won"]
            n_c[r[key]] = n_c.get(r[key], 0) + 1
            w_c[r[key]] = w_c.get(r[key], 0) + r["won"]
            p += 1
        prior = won / total if total else 0.5
        c = rows[i][key]
        n = n_c.get(c, 0)
        rate = (w_c.get(c, 0) + SMOOTHING * prior) / (n + SMOOTHING) if n >= MIN_SUPPORT else prior
        out[i] = 100 * rate
    return out


def test_owner_and_lead_source_are_found(env):
    prefix, state, tmp = env
    rng = random.Random(99)
    owner_eff = {o: rng.gauss(0, 0.9) for o in OWNERS}
    source_eff = dict(zip(SOURCES, [-1.2, 0.9, -0.4, -0.9, 1.3, 0.3]))
    n = 5000
    records, rows = [], []
    for i in range(n):
        comps = [rng.uniform(0, 100) for _ in NAMES]
        owner, source, region = rng.choice(OWNERS), rng.choice(SOURCES), rng.choice(REGIONS)
        eta = -3.0 + 0.06 * score_of(SEED, comps) + owner_eff[owner] + source_eff[source]
        won = rng.random() < 1 / (1 + math.exp(-eta))
        close = 20000 + int(730 * i / n)
        snap = close - 14
        records.append(example(i, snap, close, won, comps, [], 1700000000000 + i,
                               {"owner_id": owner, "lead_source": source, "region": region}))
        rows.append({"comps": comps, "owner": owner, "source": source, "won": int(won),
                     "close": close, "snap": snap})
    produce(prefix, records)
    w = Refit(prefix, state, tmp / "refit.log", "--refit.min.new.outcomes", str(n),
              "--refit.discover", "true", "--refit.factors.categorical",
              "owner_id,lead_source,region", "--refit.factors.numeric", "",
              "--refit.max.weight.change", "0", "--refit.permutations", "19")
    w.port()
    recs = read_weights(prefix, lambda r: any(x["version"] == 2 for _, x in r), 300, w)
    (chal,) = [x for _, x in recs if x["version"] == 2]
    assert chal["status"] == "CHALLENGER", chal["reason"]
    names = sorted(c["name"] for c in chal["components"])
    assert names == ["lead_source_win_rate", "owner_id_win_rate"], (names, w.tail())
    for c in chal["components"]:
        assert c["kind"] == "CATEGORY_WIN_RATE" and c["smoothing"] == SMOOTHING
        table = {e["category"]: e for e in c["categories"]}
        assert set(table) == set(OWNERS if c["source"] == "owner_id" else SOURCES)
        assert all(e["n"] >= MIN_SUPPORT and 0 < e["rate"] < 1 for e in table.values())
        assert chal["weights"][c["name"]] > 0.05
    assert "learned factors adopted" in chal["reason"]
    # The evidence for every candidate, region's (not adopted) too, as the report reads it.
    ev = {e["name"]: e for e in chal["discovery"]}
    assert set(ev) == {"owner_id_win_rate", "lead_source_win_rate", "region_win_rate"}, ev
    assert sorted(k for k, e in ev.items() if e["adopted"]) == names
    assert not ev["region_win_rate"]["beats_shuffled"], ev["region_win_rate"]
    for e in ev.values():
        assert e["kind"] == "CATEGORY_WIN_RATE" and e["permutations"] == 19
        assert e["n_examples"] == n and e["n_with_value"] == n
        assert e["adopted"] == e["beats_shuffled"]
        if e["adopted"]:
            assert e["delta_auc"] > max(0, e["shuffled_max_delta_auc"])
            assert e["delta_log_loss"] > max(0, e["shuffled_max_delta_log_loss"])
    assert ev["owner_id_win_rate"]["n_categories"] == len(OWNERS)
    w.stop()

    # scikit-learn on the same candidate features, over the challenger's own folds.
    owner_rate = point_in_time(rows, "owner")
    source_rate = point_in_time(rows, "source")
    x = np.array([r["comps"] + [owner_rate[i], source_rate[i]] for i, r in enumerate(rows)])
    y = np.array([r["won"] for r in rows])
    close = np.array([r["close"] for r in rows])
    ours, theirs = [], []
    for fold in chal["validation"]:
        if fold["auc"] is None:
            continue
        lo, hi = day_of(fold["test_start"]), day_of(fold["test_end"])
        train, test = close < lo, (close >= lo) & (close < hi)
        assert test.sum() == fold["n"], "fold windows differ"
        model = LogisticRegression(C=1.0 / n, max_iter=5000).fit(x[train], y[train])
        theirs.append(roc_auc_score(y[test], model.decision_function(x[test])))
        ours.append(fold["auc"])
    assert len(ours) >= 3
    assert abs(np.mean(ours) - np.mean(theirs)) <= 0.01, (ours, theirs)
