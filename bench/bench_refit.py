#!/usr/bin/env python3
"""Refit cycle benchmark: closedloop-refit's cycle vs scikit-learn on the same data.

    python3 bench/bench_refit.py [--bin build/bin] [--n 1000000]

Runs bench_refit (C), which stores n labeled examples in a fresh LMDB training set,
loads them back into rows and runs one refit (capped simplex fit + rolling-origin
validation of the refit and of the champion on 5 folds), and writes the same design as
CSV. Then, in the same run, times scikit-learn LogisticRegression (lbfgs, C = 1/lambda
with closedloop's default lambda = 1.0 * n) on that CSV:
  - one fit (what a single closedloop fit replaces), and
  - the same amount of work as a refit cycle: one fit plus 2 x 5 rolling-origin fits
    (TimeSeriesSplit over the close-date order, which is the row order).
scikit-learn fits unconstrained coefficients (it has no simplex, cap or champion anchor),
so the comparison is of time for the same data and the same number of fits; agreement
of the solvers themselves is checked by tests/interop/test_fit_sklearn.py.
Prints "name value" lines.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import TimeSeriesSplit


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("CL_BIN_DIR", "build/bin"))
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    tool = os.path.join(args.bin, "bench_refit")
    if not os.access(tool, os.X_OK):
        sys.exit(f"bench_refit: {tool} not found; build the bench_refit target or pass --bin")
    with tempfile.TemporaryDirectory() as d:
        csv = os.path.join(d, "design.csv")
        t0 = time.perf_counter()
        proc = subprocess.run([tool, "--n", str(args.n), "--state", os.path.join(d, "state"),
                               "--csv", csv], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"bench_refit failed: {proc.stderr}")
        wall = time.perf_counter() - t0
        ours = dict(line.split(" ", 1) for line in proc.stdout.strip().splitlines())
        data = np.loadtxt(csv, delimiter=",", skiprows=1)
    y, x = data[:, 0].astype(int), data[:, 1:]
    n = len(y)
    C = 1.0 / (1.0 * n)

    t0 = time.perf_counter()
    LogisticRegression(C=C, max_iter=1000).fit(x, y)
    sk_one = time.perf_counter() - t0

    t0 = time.perf_counter()
    LogisticRegression(C=C, max_iter=1000).fit(x, y)
    for _ in range(2):  # the refit and the champion, on the same windows
        for train, _test in TimeSeriesSplit(n_splits=5).split(x):
            LogisticRegression(C=C, max_iter=1000).fit(x[train], y[train])
    sk_cycle = time.perf_counter() - t0

    for k in sorted(ours):
        print(k, ours[k])
    print("refit_bench_process_seconds %.3f" % wall)
    print("sklearn_one_fit_seconds %.3f" % sk_one)
    print("sklearn_cycle_equivalent_seconds %.3f" % sk_cycle)
    print("ratio_refit_run_vs_sklearn_cycle %.3f" % (float(ours["refit_run_seconds"]) / sk_cycle))
    print("ratio_refit_cycle_vs_sklearn_cycle %.3f"
          % (float(ours["refit_cycle_seconds"]) / sk_cycle))


if __name__ == "__main__":
    main()
