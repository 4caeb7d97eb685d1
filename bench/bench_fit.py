#!/usr/bin/env python3
"""Refit benchmark: closedloop-fit vs scikit-learn LogisticRegression on the same data.

    python3 bench/bench_fit.py [--bin build/bin] [--n 1000000] [--seed 1]

Draws n labeled examples x 6 components (0..100) from a known non-negative model,
writes them once as CSV, then in the same run times
  - closedloop's solver in unconstrained mode (the solver's own clock, "fit_seconds",
    so CSV parsing is excluded; the process wall time is reported separately),
  - scikit-learn LogisticRegression(lbfgs) with the same C, at its default tolerance
    and at a tight one,
  - closedloop's simplex (production) fit,
and reports the ratios and how far the coefficients agree. One line per figure,
"name value", so results can be appended to the committed results file by the lead.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

TRUTH = np.array([0.30, 0.05, 0.10, 0.35, 0.20, 0.00])
NAMES = ["speed_to_close", "largest_deal", "product_mix", "upsell_instances", "win_rate", "recency"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("CL_BIN_DIR", "build/bin"))
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--C", type=float, default=1.0)
    args = ap.parse_args()
    tool = os.path.join(args.bin, "closedloop-fit")
    if not os.access(tool, os.X_OK):
        sys.exit(f"bench_fit: {tool} not found; build the closedloop-fit target or pass --bin")

    rng = np.random.default_rng(args.seed)
    x = rng.uniform(0, 100, size=(args.n, 6))
    p = 1 / (1 + np.exp(-(-4.0 + 0.08 * x @ TRUTH)))
    y = (rng.uniform(size=args.n) < p).astype(int)

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "labeled.csv")
        np.savetxt(path, np.hstack([y.reshape(-1, 1), x]), delimiter=",", fmt=["%d"] + ["%.6f"] * 6,
                   header="won," + ",".join(NAMES), comments="")
        x = np.loadtxt(path, delimiter=",", skiprows=1)[:, 1:]  # the exact values the tool reads

        t0 = time.perf_counter()
        proc = subprocess.run([tool, "--mode", "unconstrained", "--C", repr(args.C), path], capture_output=True,
                              text=True, check=True)
        wall = time.perf_counter() - t0
        ours = json.loads(proc.stdout)
        proc = subprocess.run([tool, path], capture_output=True, text=True, check=True)
        simplex = json.loads(proc.stdout)

    t0 = time.perf_counter()
    LogisticRegression(C=args.C, max_iter=10000).fit(x, y)
    sk_default = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = LogisticRegression(C=args.C, tol=1e-10, max_iter=100000).fit(x, y)
    sk_tight = time.perf_counter() - t0

    beta = np.array([ours["coef"][n] for n in NAMES])
    rel = np.max(np.abs(beta - ref.coef_[0]) / np.maximum(np.abs(ref.coef_[0]), 1e-12))
    w = np.array([simplex["weights"][n] for n in NAMES])
    figures = [
        ("fit.examples", args.n),
        ("fit.components", 6),
        ("fit.unconstrained.closedloop_seconds", ours["fit_seconds"]),
        ("fit.unconstrained.closedloop_iterations", ours["iterations"]),
        ("fit.unconstrained.closedloop_wall_seconds_incl_csv", wall),
        ("fit.unconstrained.sklearn_default_tol_seconds", sk_default),
        ("fit.unconstrained.sklearn_tol_1e-10_seconds", sk_tight),
        ("fit.unconstrained.speedup_vs_sklearn_default", sk_default / ours["fit_seconds"]),
        ("fit.unconstrained.speedup_vs_sklearn_tight", sk_tight / ours["fit_seconds"]),
        ("fit.unconstrained.max_rel_coef_diff_vs_sklearn", rel),
        ("fit.unconstrained.intercept_diff_vs_sklearn", abs(ours["intercept"] - ref.intercept_[0])),
        ("fit.simplex.closedloop_seconds", simplex["fit_seconds"]),
        ("fit.simplex.closedloop_iterations", simplex["iterations"]),
        ("fit.simplex.max_abs_weight_error_vs_truth", float(np.max(np.abs(w - TRUTH)))),
    ]
    for name, value in figures:
        print(f"{name} {value:.6g}" if isinstance(value, float) else f"{name} {value}")


if __name__ == "__main__":
    main()
