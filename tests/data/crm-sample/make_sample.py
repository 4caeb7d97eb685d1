#!/usr/bin/env python3
"""Deterministic ~600-row sample of the olga-lab1 opportunities export, whole accounts.

Accounts are ordered by SHA-256 of their name and taken until the sample reaches
600 rows, so every kept account keeps its full history (the components are computed
from an account's own past) and re-running gives the same file. Rows keep the
source order.

    python3 make_sample.py /path/to/opportunities.csv > opportunities.csv
"""
import csv
import hashlib
import sys

TARGET_ROWS = 600


def main(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    account = header.index("account_name")
    by_account = {}
    for row in rows:
        by_account.setdefault(row[account], 0)
        by_account[row[account]] += 1
    order = sorted(by_account, key=lambda a: hashlib.sha256(a.encode("utf-8")).hexdigest())
    keep, total = set(), 0
    for name in order:
        if total >= TARGET_ROWS:
            break
        keep.add(name)
        total += by_account[name]
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(header)
    for row in rows:
        if row[account] in keep:
            out.writerow(row)


if __name__ == "__main__":
    main(sys.argv[1])
