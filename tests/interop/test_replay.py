"""closedloop-replay on tests/data/crm-sample: the written layout matches closedloop-gen's,
every snapshot lies strictly between its opportunity's creation and close, the components
agree with an independent Python implementation of docs/backtest.md's formulas (which
only ever looks at outcomes closed before the snapshot day), and the backtest prints its
tables with AUCs in [0, 1]."""
import csv
import datetime as dt
import glob
import json
import os
import re
import subprocess

import pytest

SOURCE = os.environ.get("CL_SOURCE_DIR")
BIN = os.environ.get("CL_BIN_DIR")
HEADER = ("run_id,snapshot_time,opportunity_id,account_id,owner_id,stage,amount,currency,"
          "created_date,expected_close_date,days_in_stage,segment,region,product,lead_source,"
          "type,speed_to_close,largest_deal,product_mix,upsell_instances,win_rate,recency,"
          "opportunity_score,account_score").split(",")
EXPORT_HEADER = ("Id,AccountId,OwnerId,StageName,IsClosed,IsWon,IsDeleted,CloseDate,Amount,"
                 "CreatedDate,SystemModstamp,LastModifiedDate,Type,LeadSource,"
                 "CurrencyIsoCode").split(",")
COMPONENTS = HEADER[16:22]
SEED = [0.15, 0.20, 0.15, 0.25, 0.20, 0.05]


def tool():
    assert SOURCE and BIN, "CL_SOURCE_DIR and CL_BIN_DIR must be set (run through ctest)"
    exe = os.path.join(BIN, "closedloop-replay")
    assert os.access(exe, os.X_OK), f"{exe} is not built"
    return exe


def sample():
    return os.path.join(SOURCE, "tests", "data", "crm-sample", "opportunities.csv")


def day(s):
    return dt.date.fromisoformat(s[:10])


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay")
    subprocess.run([tool(), "write", sample(), "--out", str(out), "--force"], check=True,
                   capture_output=True, text=True)
    return out


def load_source():
    with open(sample(), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_layout_and_headers(replay):
    assert sorted(os.listdir(replay)) == ["ids.csv", "outcomes", "replay.json", "runs"]
    runs = sorted(glob.glob(str(replay / "runs" / "run-*.csv")))
    assert runs, "no run files"
    days = [day(os.path.basename(r)[4:14]) for r in runs]
    assert all((b - a).days == 7 for a, b in zip(days, days[1:]))
    for r in runs:
        with open(r, newline="") as f:
            assert next(csv.reader(f)) == HEADER
    with open(replay / "outcomes" / "closed_opportunities.csv", newline="") as f:
        assert next(csv.reader(f)) == EXPORT_HEADER
    summary = json.loads((replay / "replay.json").read_text())
    source = load_source()
    counts = summary["counts"]
    assert counts["opportunities"] == len(source)
    assert counts["closed_won"] == sum(r["is_won"] == "True" for r in source)
    assert counts["runs"] == len(runs)


def test_outcomes_match_the_export(replay):
    source = {r["opportunity_id"]: r for r in load_source()}
    with open(replay / "ids.csv", newline="") as f:
        ids = {(r["kind"], r["source"]): r["id"] for r in csv.DictReader(f)}
    with open(replay / "outcomes" / "closed_opportunities.csv", newline="") as f:
        export = list(csv.DictReader(f))
    closed = [r for r in source.values() if r["is_closed"] == "True"]
    assert len(export) == len(closed)
    by_id = {ids[("opportunity", k)]: v for k, v in source.items()}
    previous = ""
    for row in export:
        assert re.fullmatch(r"006[0-9A-Za-z]{15}", row["Id"])
        src = by_id[row["Id"]]
        assert row["StageName"] == ("Closed Won" if src["is_won"] == "True" else "Closed Lost")
        assert row["IsWon"] == ("true" if src["is_won"] == "True" else "false")
        assert row["CloseDate"] == src["close_date"]
        assert row["SystemModstamp"] == src["close_date"] + "T18:00:00.000+0000"
        assert row["AccountId"] == ids[("account", src["account_name"])]
        assert row["OwnerId"] == ids[("owner", src["owner"])]
        assert float(row["Amount"]) == float(src["amount"])
        assert row["LeadSource"] == src["lead_source"]
        assert (row["CloseDate"], row["Id"]) >= (previous, "")
        previous = row["CloseDate"]
    records = [json.loads(line) for line in
               (replay / "outcomes" / "opportunities.jsonl").read_text().splitlines()]
    assert len(records) == len(source)
    stamps = [(r["SystemModstamp"], r["Id"]) for r in records]
    assert stamps == sorted(stamps)
    assert sum(not r["IsClosed"] for r in records) == len(source) - len(closed)


def past_components(history, opp, when, smoothing=5.0, half_life=180.0, cap=4):
    """docs/backtest.md, written independently of the C code."""
    known = [o for o in history if o["is_closed"] == "True" and day(o["close_date"]) < when]
    g = (sum(o["is_won"] == "True" for o in known) / len(known)) if known else 0.5
    mine = [o for o in known if o["account_name"] == opp["account_name"]
            and o["opportunity_id"] != opp["opportunity_id"]]
    won = [o for o in mine if o["is_won"] == "True"]
    cycles = sorted((day(o["close_date"]) - day(o["created_date"])).days for o in mine)
    age = (when - day(opp["created_date"])).days
    if cycles:
        n = len(cycles)
        median = cycles[n // 2] if n % 2 else (cycles[n // 2 - 1] + cycles[n // 2]) / 2
        speed = min(100, max(0, 100 * (1 - age / (2 * max(median, 1)))))
    else:
        median, speed = 0, 50
    if not won:
        largest = 0
    else:
        top = max(float(o["amount"]) for o in won)
        amount = float(opp["amount"])
        largest = 100 if amount <= top else 100 * top / amount
    mix = 100 * min(len({o["product"] for o in won}), cap) / cap
    upsell = 100 * len(won) / (len(won) + 2)
    rate = 100 * (len(won) + smoothing * g) / (len(mine) + smoothing)
    if won:
        last = max(day(o["close_date"]) for o in won)
        recency = 100 * 0.5 ** ((when - last).days / half_life)
    else:
        recency = 0
    return [speed, largest, mix, upsell, rate, recency], median


def test_snapshots_are_open_and_components_match_oracle(replay):
    source = load_source()
    with open(replay / "ids.csv", newline="") as f:
        to_source = {r["id"]: r["source"] for r in csv.DictReader(f) if r["kind"] == "opportunity"}
    by_source = {r["opportunity_id"]: r for r in source}
    checked = 0
    for path in sorted(glob.glob(str(replay / "runs" / "run-*.csv"))):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            when = day(row["snapshot_time"])
            assert row["snapshot_time"].endswith("T06:00:00.000Z")
            src = by_source[to_source[row["opportunity_id"]]]
            assert day(src["created_date"]) < when, "snapshot before creation"
            if src["is_closed"] == "True":
                assert when < day(src["close_date"]), "snapshot on or after the close"
            values = [float(row[c]) for c in COMPONENTS]
            assert all(0 <= v <= 100 for v in values)
            # Required by OpportunitySnapshot: every row must be publishable as is.
            assert day(row["expected_close_date"]) > when, row
            score = sum(w * v for w, v in zip(SEED, values))
            assert abs(float(row["opportunity_score"]) - score) <= 0.006
            # The oracle is O(n) per row: check every 5th run fully.
            if int(row["run_id"][-2:]) % 5 == 0:
                expected, _ = past_components(source, src, when)
                for name, got, want in zip(COMPONENTS, values, expected):
                    assert abs(got - want) <= 0.0051, (row["run_id"], src["opportunity_id"], name, got, want)
                checked += 1
    assert checked > 100


def test_backtest_prints_table():
    result = subprocess.run([tool(), "backtest", sample(), "--backtest.min.won=10",
                             "--backtest.min.lost=10", "--backtest.permutations=3"],
                            check=True, capture_output=True, text=True)
    out = result.stdout
    assert "| period | train (won) | test (won) | AUC seed | AUC learned | AUC +factors |" in out
    rows = [line for line in out.splitlines() if re.match(r"\| 20\d\d-Q[1-4] \|", line)]
    assert len(rows) >= 10
    aucs = []
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for cell in cells[3:6]:
            if cell != "–":
                aucs.append(float(cell))
    assert aucs and all(0 <= a <= 1 for a in aucs)
    pooled = re.search(r"\| seed weights \| ([0-9.]+) \|", out)
    assert pooled and 0 <= float(pooled.group(1)) <= 1
    assert re.search(r"learned factors add value: (yes|no)", out)


def test_bad_row_names_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.csv"
    with open(sample(), encoding="utf-8") as f:
        lines = f.read().splitlines()
    lines[3] = lines[3].replace(",True,True", ",Maybe,True", 1) if ",True,True" in lines[3] \
        else lines[3].replace(",False,True", ",Maybe,True", 1)
    bad.write_text("\n".join(lines) + "\n")
    r = subprocess.run([tool(), "write", str(bad), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "bad.csv line 4, column is_won" in r.stderr
    r = subprocess.run([tool(), "write", str(bad), "--out", str(tmp_path / "o"),
                        "--replay.bad.rows=skip"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "o" / "replay.json").read_text())["counts"]["bad_rows"] == 1
