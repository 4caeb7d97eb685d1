"""Checks closedloop-gen's files with independent Python code.

The generator is the ground truth for the end-to-end test, so its files are checked
here by code that shares nothing with it: the CSV module parses the run files and the
Salesforce export, json parses the Opportunity records, and scikit-learn's
LogisticRegression, fitted on (components of the last snapshot before close -> won),
must recover the true weights written to truth.json.
"""

import csv
import filecmp
import json
import math
import os
import re
import subprocess
from datetime import date, datetime

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

COMPONENTS = ["speed_to_close", "largest_deal", "product_mix", "upsell_instances",
              "win_rate", "recency"]
SEED_WEIGHTS = [0.15, 0.20, 0.15, 0.25, 0.20, 0.05]
RUN_HEADER = ("run_id,snapshot_time,opportunity_id,account_id,owner_id,stage,amount,currency,"
              "created_date,expected_close_date,days_in_stage,segment,region,product,"
              "lead_source,type,speed_to_close,largest_deal,product_mix,upsell_instances,"
              "win_rate,recency,opportunity_score,account_score").split(",")
EXPORT_HEADER = ("Id,AccountId,OwnerId,StageName,IsClosed,IsWon,IsDeleted,CloseDate,Amount,"
                 "CreatedDate,SystemModstamp,LastModifiedDate,Type,LeadSource,"
                 "CurrencyIsoCode").split(",")
OPEN_STAGES = {"Prospecting", "Qualification", "Needs Analysis", "Proposal", "Negotiation"}
SF_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
SNAPSHOT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T06:00:00\.000Z$")


def gen_binary():
    bin_dir = os.environ.get("CL_BIN_DIR")
    assert bin_dir, "CL_BIN_DIR is not set: run this test through ctest"
    path = os.path.join(bin_dir, "closedloop-gen")
    assert os.access(path, os.X_OK), f"{path} is missing: build the closedloop-gen target first"
    return path


def generate(out, *args):
    result = subprocess.run([gen_binary(), "--out", str(out), *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"closedloop-gen failed: {result.stderr}"
    return out


def salesforce_checksum(id15):
    chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
    suffix = ""
    for chunk in range(3):
        bits = 0
        for j, ch in enumerate(id15[chunk * 5:chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << j
        suffix += chars[bits]
    return suffix


def check_id(value, prefix):
    assert len(value) == 18 and value.startswith(prefix), value
    assert value[15:] == salesforce_checksum(value[:15]), f"bad checksum in {value}"


def sf_time(text):
    assert SF_DATETIME.match(text), text
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


def read_runs(out):
    """{opportunity_id: [row, ...]} in run order, plus the number of rows per file."""
    by_opp, files = {}, {}
    for name in sorted(os.listdir(out / "runs")):
        with open(out / "runs" / name, newline="") as f:
            reader = csv.reader(f)
            assert next(reader) == RUN_HEADER, f"{name}: header differs"
            rows = 0
            for row in reader:
                rec = dict(zip(RUN_HEADER, row))
                assert len(row) == len(RUN_HEADER), f"{name}: {row}"
                assert "run-" + rec["snapshot_time"][:10] == rec["run_id"] == name[:-4]
                by_opp.setdefault(rec["opportunity_id"], []).append(rec)
                rows += 1
            files[name] = rows
    return by_opp, files


def read_export(out):
    with open(out / "outcomes" / "closed_opportunities.csv", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == EXPORT_HEADER
        return [dict(zip(EXPORT_HEADER, row)) for row in reader]


def read_versions(out):
    with open(out / "outcomes" / "opportunities.jsonl") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    out = generate(tmp_path_factory.mktemp("gen") / "h", "--seed", "7",
                   "--opportunities", "30000", "--months", "18")
    with open(out / "truth.json") as f:
        truth = json.load(f)
    by_opp, files = read_runs(out)
    return {"out": out, "truth": truth, "runs": by_opp, "files": files,
            "export": read_export(out), "versions": read_versions(out)}


def test_run_rows_are_well_formed(history):
    seen_runs = set()
    for opp, rows in history["runs"].items():
        check_id(opp, "006")
        for r in rows:
            check_id(r["account_id"], "001")
            check_id(r["owner_id"], "005")
            assert SNAPSHOT_TIME.match(r["snapshot_time"]), r["snapshot_time"]
            assert r["stage"] in OPEN_STAGES
            assert r["currency"] == "USD"
            assert float(r["amount"]) >= 500.0
            created = date.fromisoformat(r["created_date"])
            run_day = date.fromisoformat(r["snapshot_time"][:10])
            # Runs are at 06:00Z and deals are created later in the day, so a run sees
            # only deals created on an earlier day.
            assert created < run_day, "snapshot taken before the opportunity existed"
            assert date.fromisoformat(r["expected_close_date"]) > run_day
            assert int(r["days_in_stage"]) >= 0
            assert r["segment"] in {"SMB", "MidMarket", "Enterprise"}
            assert r["type"] in {"New Business", "Existing Business", "Upsell"}
            comps = [int(r[c]) for c in COMPONENTS]
            assert all(0 <= c <= 100 for c in comps), comps
            # The source system's score is exactly the seed model's weighted sum.
            expected = sum(w * c for w, c in zip(SEED_WEIGHTS, comps))
            assert abs(float(r["opportunity_score"]) - expected) < 0.005
            assert r["account_score"] == "" or 0 <= int(r["account_score"]) <= 100
            seen_runs.add(r["run_id"])
    # The history starts empty: the run on the start day sees nothing (its file has only
    # the header); every later run sees open opportunities.
    files = history["files"]
    assert len(files) == history["truth"]["counts"]["runs"]
    assert seen_runs == {name[:-4] for name, rows in files.items() if rows}
    assert [name for name, rows in files.items() if not rows] == [min(files)]
    # Nullable cells really occur (empty = null), so consumers' null paths get exercised.
    rows = [r for rs in history["runs"].values() for r in rs]
    assert any(r["lead_source"] == "" for r in rows)
    assert any(r["account_score"] == "" for r in rows)


def test_counts_agree_with_truth(history):
    counts = history["truth"]["counts"]
    assert sum(history["files"].values()) == counts["snapshots"]
    assert len(history["files"]) == counts["runs"]
    assert len(history["export"]) == counts["closed_won"] + counts["closed_lost"]
    assert len(history["versions"]) == counts["record_versions"]
    won = sum(r["IsWon"] == "true" for r in history["export"])
    assert won == counts["closed_won"]
    assert (counts["closed_won"] + counts["closed_lost"] + counts["deleted"]
            + counts["open_at_end"]) == counts["opportunities"]
    # A realistic win rate (documented target ~30%).
    assert 0.22 <= won / len(history["export"]) <= 0.38
    assert counts["reopened"] > 0 and counts["deleted"] > 0


def test_each_closed_opportunity_has_exactly_one_final_outcome(history):
    versions_by_id = {}
    for v in history["versions"]:
        assert v["attributes"] == {"type": "Opportunity",
                                   "url": "/services/data/v60.0/sobjects/Opportunity/" + v["Id"]}
        versions_by_id.setdefault(v["Id"], []).append(v)
    stamps = [sf_time(v["SystemModstamp"]) for v in history["versions"]]
    assert stamps == sorted(stamps), "records are not ordered by SystemModstamp"
    for vid, vs in versions_by_id.items():
        times = [sf_time(v["SystemModstamp"]) for v in vs]
        assert times == sorted(set(times)), f"{vid}: versions not strictly increasing"
        assert all(sf_time(v["CreatedDate"]) <= t for v, t in zip(vs, times))
        assert all(v["IsWon"] <= v["IsClosed"] for v in vs)
    ids = [r["Id"] for r in history["export"]]
    assert len(ids) == len(set(ids)), "an opportunity appears twice in the export"
    for r in history["export"]:
        last = versions_by_id[r["Id"]][-1]
        assert last["IsClosed"] and not last["IsDeleted"]
        assert last["StageName"] == r["StageName"] in {"Closed Won", "Closed Lost"}
        assert (r["IsWon"] == "true") == last["IsWon"] == (r["StageName"] == "Closed Won")
        assert last["SystemModstamp"] == r["SystemModstamp"]
        assert last["CloseDate"] == r["CloseDate"]
    exported = set(ids)
    deleted = {vid for vid, vs in versions_by_id.items() if vs[-1]["IsDeleted"]}
    assert deleted and not (deleted & exported), "deleted opportunities must not be exported"
    for vid in deleted:
        assert versions_by_id[vid][-1]["IsClosed"]
    reopened = [vs for vs in versions_by_id.values()
                if any(v["IsClosed"] for v in vs) and any(not v["IsClosed"] for v in vs)]
    assert reopened, "no re-opened opportunity in the records"
    for vs in reopened:
        assert vs[0]["IsClosed"] and vs[0]["StageName"] == "Closed Lost"
        assert not vs[1]["IsClosed"]


def test_snapshots_only_while_open(history):
    versions_by_id = {}
    for v in history["versions"]:
        versions_by_id.setdefault(v["Id"], []).append(v)
    export = {r["Id"]: r for r in history["export"]}
    for opp, rows in history["runs"].items():
        days = [date.fromisoformat(r["snapshot_time"][:10]) for r in rows]
        vs = versions_by_id[opp]
        final = vs[-1]
        if final["IsClosed"]:
            close = date.fromisoformat(final["CloseDate"])
            assert max(days) < close, f"{opp}: snapshot on or after its close date"
        if opp in export:
            assert max(days) < date.fromisoformat(export[opp]["CloseDate"])
        # Closed, then re-opened: no run may see it in between (the re-open happens
        # after that day's 06:00Z run).
        for first, reopen in zip(vs, vs[1:]):
            if first["IsClosed"] and not reopen["IsClosed"]:
                gap_start = date.fromisoformat(first["CloseDate"])
                gap_end = sf_time(reopen["SystemModstamp"]).date()
                assert not any(gap_start <= d <= gap_end for d in days), opp
    # Every opportunity open at the end and created by the last run is in that run.
    last_run = max(r["run_id"] for rows in history["runs"].values() for r in rows)
    last_day = date.fromisoformat(last_run[4:])
    open_ids = [vid for vid, vs in versions_by_id.items() if not vs[-1]["IsClosed"]]
    assert open_ids
    for vid in open_ids:
        vs = versions_by_id[vid]
        opened = sf_time(vs[-1]["SystemModstamp"] if any(v["IsClosed"] for v in vs)
                         else vs[0]["CreatedDate"]).date()
        if opened < last_day:
            assert history["runs"][vid][-1]["run_id"] == last_run, vid


def last_snapshot_dataset(history):
    X, y = [], []
    for r in history["export"]:
        rows = history["runs"].get(r["Id"])
        if not rows:
            continue  # closed between two runs: never scored
        last = max(rows, key=lambda s: s["snapshot_time"])
        X.append([int(last[c]) for c in COMPONENTS])
        y.append(1 if r["IsWon"] == "true" else 0)
    return np.array(X, dtype=float), np.array(y)


def test_logistic_regression_recovers_true_weights(history):
    truth = history["truth"]["model"]
    true_w = np.array([truth["true_weights"][c] for c in COMPONENTS])
    X, y = last_snapshot_dataset(history)
    assert len(y) > 20000
    model = LogisticRegression(C=np.inf, max_iter=1000, tol=1e-10).fit(X, y)
    beta = model.coef_[0]
    slope = beta.sum()
    w = beta / slope

    # Standard errors from the observed Fisher information, and the delta method for
    # the normalized weights w_i = beta_i / sum(beta). The tolerance is 4 standard
    # errors, so it shrinks with the sample; with ~25k outcomes each weight's SE is
    # about 0.01, so a generator drawing outcomes from the seed weights fails.
    X1 = np.hstack([np.ones((len(y), 1)), X])
    p = model.predict_proba(X)[:, 1]
    cov = np.linalg.inv(X1.T @ (X1 * (p * (1 - p))[:, None]))
    cov_beta = cov[1:, 1:]
    k = len(COMPONENTS)
    jac = (np.eye(k) * slope - beta[:, None] * np.ones((1, k))) / slope**2
    se_w = np.sqrt(np.diag(jac @ cov_beta @ jac.T))
    se_slope = math.sqrt(np.ones(k) @ cov_beta @ np.ones(k))
    se_intercept = math.sqrt(cov[0, 0])

    assert np.all(se_w < 0.03), f"sample too small to test recovery: se={se_w}"
    for name, est, true, se in zip(COMPONENTS, w, true_w, se_w):
        assert abs(est - true) <= 4 * se + 0.005, f"{name}: fitted {est:.3f}, true {true}"
    assert abs(slope - truth["slope"]) <= 4 * se_slope, (slope, truth["slope"])
    assert abs(model.intercept_[0] - truth["intercept"]) <= 4 * se_intercept
    # And the data really tells the truth apart from the seed model.
    assert np.abs(w - true_w).sum() < np.abs(w - np.array(SEED_WEIGHTS)).sum() / 3


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    a = generate(tmp_path / "a", "--seed", "11", "--opportunities", "3000", "--months", "6")
    b = generate(tmp_path / "b", "--seed", "11", "--opportunities", "3000", "--months", "6")
    c = generate(tmp_path / "c", "--seed", "12", "--opportunities", "3000", "--months", "6")
    for sub in ["", "runs", "outcomes"]:
        names = sorted(n for n in os.listdir(a / sub) if os.path.isfile(a / sub / n))
        assert names == sorted(n for n in os.listdir(b / sub) if os.path.isfile(b / sub / n))
        match, mismatch, errors = filecmp.cmpfiles(a / sub, b / sub, names, shallow=False)
        assert not mismatch and not errors, (sub, mismatch, errors)
    for name in ["outcomes/opportunities.jsonl", "outcomes/closed_opportunities.csv",
                 "accounts.csv", "runs/run-2024-03-04.csv"]:
        assert not filecmp.cmp(a / name, c / name, shallow=False), f"{name} ignores the seed"
    # Refuses to overwrite an existing history without --force; --force replaces it.
    again = subprocess.run([gen_binary(), "--out", str(a), "--seed", "11"],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode != 0 and "--force" in again.stderr
    generate(a, "--seed", "11", "--opportunities", "3000", "--months", "6",
             "--run-interval-days", "14", "--force")
    assert len(os.listdir(a / "runs")) == json.load(open(a / "truth.json"))["counts"]["runs"]


def test_jsonl_runs_carry_the_same_rows(tmp_path):
    a = generate(tmp_path / "csv", "--seed", "5", "--opportunities", "1500", "--months", "4")
    b = generate(tmp_path / "jsonl", "--seed", "5", "--opportunities", "1500", "--months", "4",
                 "--format", "jsonl")
    csv_names = sorted(os.listdir(a / "runs"))
    assert [n[:-4] + ".jsonl" for n in csv_names] == sorted(os.listdir(b / "runs"))
    for name in csv_names:
        with open(a / "runs" / name, newline="") as f:
            rows = list(csv.DictReader(f))
        with open(b / "runs" / (name[:-4] + ".jsonl")) as f:
            objs = [json.loads(line) for line in f]
        assert len(rows) == len(objs)
        for row, obj in zip(rows, objs):
            assert list(obj) == RUN_HEADER
            for key in RUN_HEADER:
                value = obj[key]
                if value is None:
                    assert row[key] == ""
                elif isinstance(value, str):
                    assert row[key] == value
                else:
                    assert float(row[key]) == pytest.approx(value, abs=1e-9), key


def test_learned_factors_move_win_rates(tmp_path):
    out = generate(tmp_path / "lf", "--seed", "3", "--opportunities", "20000",
                   "--learned-factors")
    truth = json.load(open(out / "truth.json"))
    factors = truth["learned_factors"]
    assert factors["enabled"] is True
    effects = factors["lead_source_logit_effects"]
    assert effects["Partner Referral"] > 0 > effects["Purchased List"]
    assert len(factors["owner_logit_effects"]) == truth["counts"]["owners"]
    rates = {}
    for r in read_export(out):
        won, n = rates.get(r["LeadSource"], (0, 0))
        rates[r["LeadSource"]] = (won + (r["IsWon"] == "true"), n + 1)
    partner = rates["Partner Referral"][0] / rates["Partner Referral"][1]
    purchased = rates["Purchased List"][0] / rates["Purchased List"][1]
    # Logit effects +0.7 vs -0.8 on ~2000 and ~1000 outcomes: a gap of about 20 points
    # against a standard error of about 2 points.
    assert partner - purchased > 0.10, (partner, purchased)
