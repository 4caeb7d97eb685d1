"""Shared by the metrics tests: a generated labeled history, an independent reference of
the consumer rule + horizon policy (docs/labeled-contract.md, docs/metrics.md), and the
figures scikit-learn computes on the evaluated set.

Scores live on the scorer's 0.01 grid, so the worker's histogram AUC is exact and must
equal sklearn's roc_auc_score to rounding.
"""
import hashlib
import json
import math
import os

import numpy as np

SOURCE = os.environ.get("CL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CL_BIN_DIR", os.path.join(SOURCE, "build", "bin"))
METRICS = os.path.join(BIN, "closedloop-metrics")
DAY_MS = 86400000
MODEL = "opportunity_score"
COMPONENTS = ["speed_to_close", "largest_deal", "product_mix", "upsell_instances", "win_rate",
              "recency"]
SEED_W = [0.15, 0.20, 0.15, 0.25, 0.20, 0.05]
CHALLENGER_W = [0.05, 0.30, 0.05, 0.45, 0.10, 0.05]
BASE_DAY = 20089  # 2025-01-01


def snapshot_id(run, opp):
    return hashlib.sha256(f"{run}\0{opp}".encode()).hexdigest()[:32]


def band(score):
    return "HIGH" if score >= 70 else "MEDIUM" if score >= 40 else "LOW"


def prob(score):
    return 1.0 / (1.0 + math.exp(-(-3.0 + 0.06 * score)))


def entry(version, weights, comps):
    s = round(min(100.0, max(0.0, sum(w * c for w, c in zip(weights, comps)))), 2)
    return {"model": MODEL, "version": version, "score": s, "band": band(s),
            "probability": prob(s)}


def example(opp, snap_day, close_day, won, comps, version_ms, stage="Proposal",
            segment="Mid", owner="005A", versions=(1, 2), retracted=False, run=None):
    run = run or f"run-{snap_day}"
    scores = []
    if 1 in versions:
        scores.append(entry(1, SEED_W, comps))
    if 2 in versions:
        scores.append(entry(2, CHALLENGER_W, comps))
    snap = {
        "snapshot_id": snapshot_id(run, opp), "run_id": run, "snapshot_time": snap_day * DAY_MS
        + 6 * 3600 * 1000, "opportunity_id": opp, "account_id": "001" + opp[3:],
        "owner_id": owner, "stage": stage, "amount": 1000.0 + (hash(opp) % 9000),
        "currency": "USD", "created_date": snap_day - 30, "expected_close_date": close_day,
        "days_in_stage": 5, "segment": segment, "region": "EMEA", "product": "Core",
        "lead_source": "Web", "type": "New Business", "attributes": {},
        "features": {}, "opportunity_score": None, "account_score": None, "scores": scores,
    }
    for name, c in zip(COMPONENTS, comps):
        snap[name] = float(c)
    out = {
        "opportunity_id": opp, "account_id": snap["account_id"], "owner_id": owner,
        "outcome": "WON" if won else "LOST", "stage_name": "Closed Won" if won else "Closed Lost",
        "close_date": close_day, "final_value": snap["amount"], "currency": "USD",
        "created_date": snap_day - 30, "days_to_close": close_day - (snap_day - 30),
        "system_modstamp": version_ms, "source": "rest", "ingested_at": version_ms + 1000,
        "type": "New Business", "lead_source": "Web",
    }
    return {"days_before_close": close_day - snap_day, "outcome_version": version_ms,
            "retracted": retracted, "joined_at": version_ms + 2000, "snapshot": snap,
            "outcome": out}


def history(n_opps=600, seed=11):
    """Opportunities with 1..4 weekly snapshots, closed over ~5 months; the outcome
    depends mostly on upsell_instances and largest_deal (which the challenger weighs
    more). Returns the list of examples in publication order, including noise the
    consumer rule must absorb: duplicates, a superseded outcome version, retractions."""
    rng = np.random.default_rng(seed)
    stages = ["Prospecting", "Qualification", "Proposal", "Negotiation"]
    segments = ["SMB", "Mid", "Enterprise"]
    owners = ["005A", "005B", "005C", "005D<script>", "005E"]
    exs = []
    for i in range(n_opps):
        opp = f"006T{i:011d}"
        close = BASE_DAY + int(rng.integers(10, 150))
        comps = [int(x) for x in rng.integers(0, 101, size=6)]
        logit = -4.0 + 0.045 * comps[3] + 0.03 * comps[1] + rng.normal(0, 0.8)
        won = rng.uniform() < 1 / (1 + math.exp(-logit))
        vms = (close * DAY_MS) + 3600 * 1000
        stage = stages[i % 4]
        nsnaps = int(rng.integers(1, 5))
        for k in range(nsnaps):
            day = close - 2 - 7 * k  # the first one is 2 days before close (inside the horizon)
            c = [min(100, max(0, x + int(rng.integers(-5, 6)))) for x in comps]
            exs.append(example(opp, day, close, won, c, vms, stage=stage,
                               segment=segments[i % 3], owner=owners[i % 5]))
    # Noise: duplicates of the first 50 records.
    exs += [json.loads(json.dumps(e)) for e in exs[:50]]
    # A superseded version: opportunity 0 re-opened and lost at a later version.
    base = [e for e in exs if e["snapshot"]["opportunity_id"] == "006T00000000000"]
    for e in base:
        e2 = json.loads(json.dumps(e))
        e2["outcome_version"] += DAY_MS
        e2["outcome"]["system_modstamp"] += DAY_MS
        e2["outcome"]["outcome"] = "LOST" if e["outcome"]["outcome"] == "WON" else "WON"
        exs.append(e2)
    # A stale record (older version) for opportunity 0: ignored.
    stale = json.loads(json.dumps(base[0]))
    stale["outcome_version"] -= DAY_MS
    stale["outcome"]["system_modstamp"] -= DAY_MS
    exs.append(stale)
    # Retractions: opportunities 1..5 deleted.
    for e in list(exs):
        oid = e["snapshot"]["opportunity_id"]
        if oid in {f"006T{i:011d}" for i in range(1, 6)}:
            r = json.loads(json.dumps(e))
            r["retracted"] = True
            exs.append(r)
    return exs


def fold(exs):
    """The consumer rule, independently: {opp: {snapshot_id: example}}."""
    state = {}
    for e in exs:
        opp = e["snapshot"]["opportunity_id"]
        v = e["outcome_version"]
        cur = state.get(opp)
        if e["retracted"]:
            if cur is None or v >= cur[0]:
                state[opp] = [v, True, {}]
            continue
        if cur is not None and (v < cur[0] or (v == cur[0] and cur[1])):
            continue
        if cur is None or v > cur[0]:
            cur = state[opp] = [v, False, {}]
        cur[2][e["snapshot"]["snapshot_id"]] = e
    return {opp: s[2] for opp, s in state.items() if s[2]}


def evaluated(exs, version, horizon_days=7):
    """Items of one version under LATEST_BEFORE_HORIZON: (score, prob, won, close, ex)."""
    out = []
    for opp, snaps in sorted(fold(exs).items()):
        cands = [e for e in snaps.values() if e["days_before_close"] >= horizon_days
                 and any(s["version"] == version for s in e["snapshot"]["scores"])]
        if not cands:
            continue
        e = max(cands, key=lambda x: (x["snapshot"]["snapshot_time"], x["snapshot"]["snapshot_id"]))
        s = next(s for s in e["snapshot"]["scores"] if s["version"] == version)
        out.append((s["score"], s["probability"], 1 if e["outcome"]["outcome"] == "WON" else 0,
                    e["outcome"]["close_date"], e))
    return out


def to_jsonl(exs, path):
    with open(path, "w") as f:
        for e in exs:
            f.write(json.dumps(e) + "\n")


def untag(v):
    """Avro JSON -> plain values (unions are tagged {"double": x})."""
    if isinstance(v, dict):
        if len(v) == 1:
            (k, inner), = v.items()
            if k in ("double", "long", "int", "string", "boolean", "float") or "." in k:
                return untag(inner)
        return {k: untag(x) for k, x in v.items()}
    if isinstance(v, list):
        return [untag(x) for x in v]
    return v


def midrank(x):
    order = np.argsort(x, kind="mergesort")
    z = x[order]
    n = len(x)
    t = np.zeros(n)
    i = 0
    while i < n:
        j = i
        while j < n and z[j] == z[i]:
            j += 1
        t[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(n)
    out[order] = t
    return out


def fast_delong_p(a, b, y):
    """Two-sided DeLong p-value for AUC(b) - AUC(a) (Sun & Xu 2014)."""
    scores = np.vstack([a, b])
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tx = np.array([midrank(r) for r in pos])
    ty = np.array([midrank(r) for r in neg])
    tz = np.array([midrank(r) for r in np.hstack([pos, neg])])
    aucs = tz[:, :m].sum(axis=1) / m / n - (m + 1.0) / 2.0 / n
    cov = np.cov((tz[:, :m] - tx) / n) / m + np.cov(1.0 - (tz[:, m:] - ty) / m) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (aucs[1] - aucs[0]) / math.sqrt(var)
    return aucs, math.erfc(abs(z) / math.sqrt(2))
