"""Time to build the theory tables: vectorised library vs. a plain per-t Python loop.

All default schedules × 1000 t × 8 levels (R = 128). Prints seconds and the speed-up ratio.
Run: .venv/bin/python benchmarks/theory.py
"""

from __future__ import annotations

import math
import time

import numpy as np

from reschrom.theory import resolution as theory
from reschrom.theory import schedules as S


def loop_baseline(schedule: S.Schedule, n_t: int, resolution: int) -> list[tuple]:
    """The same numbers, one (t, m) at a time, as a straightforward script would compute them."""
    M = theory.num_levels(resolution)
    rows = []
    for i in range(n_t):
        t = i / (n_t - 1)
        a = float(schedule.alpha_bar(t))
        ls = float(schedule.log_snr(t))
        weights = []
        for m in range(M):
            s4 = 4.0**m
            weights.append(s4 * a / (1 + (s4 - 1) * a) ** 2 if a > 0 else s4)
        z = sum(weights)
        for m in range(M):
            s4 = 4.0**m
            tau = float(schedule.t_frac_from_log_snr(ls + math.log(s4)))
            rows.append((t, m, a, min(max(tau, 0.0), 1.0), s4 * a / ((s4 - 1) * a + 1),
                         2**m / math.sqrt(1 + (s4 - 1) * a), weights[m] / z))
    return rows


def main() -> None:
    scheds = [S.build_schedule(n, spec) for n, spec in S.DEFAULT_SCHEDULES.items()]
    n_t, res = 1000, 128
    theory.theory_table(scheds[0], res, n_t)  # warm-up (imports, pandas)

    t0 = time.perf_counter()
    tables = [theory.theory_table(s, res, n_t) for s in scheds]
    t_vec = time.perf_counter() - t0

    t0 = time.perf_counter()
    loops = [loop_baseline(s, n_t, res) for s in scheds]
    t_loop = time.perf_counter() - t0

    # same numbers
    for tab, rows in zip(tables, loops):
        r_loop = np.array([row[-1] for row in rows])
        assert np.allclose(tab["r"].to_numpy(), r_loop, atol=1e-12)

    n_rows = sum(len(t) for t in tables)
    print(f"schedules: {len(scheds)}, t points: {n_t}, levels: {theory.num_levels(res)}, rows: {n_rows}")
    print(f"vectorised theory tables: {t_vec:.4f} s  (goal < 0.1 s)")
    print(f"per-t Python loop:        {t_loop:.4f} s")
    print(f"speed-up (loop / vectorised): {t_loop / t_vec:.1f}x")


if __name__ == "__main__":
    main()
