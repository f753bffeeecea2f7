"""The guidance dump (paper §4.1, eq. 19): its columns, the test of a step where r̃ is undefined,
and reading a dump back.

``results/guidance/{model}/{prompt_id}.parquet`` holds, per (sample, step, m), the band energies
of the CFG term g = ε(x,t;c) − ε(x,t) and of ε_cond, ε_uncond (:data:`GUIDANCE_COLUMNS`); the probe
(:mod:`reschrom.measure.probe`) writes them, the aggregation (:mod:`reschrom.measure.aggregate`)
and the figures read them (:func:`read_dump`). NumPy and pandas only.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

GUIDANCE_COLUMNS = [
    "model",
    "prompt_id",
    "prompt",
    "seed",
    "sample",
    "step",
    "t",
    "t_frac",
    "m",
    "resolution",
    "energy_guidance",
    "energy_cond",
    "energy_uncond",
]
"""The contract of ``results/guidance/{model}/{prompt_id}.parquet`` (docs/DESIGN.md); the
extra column ``alpha_bar`` follows. The one definition of the dump columns."""

UNDEFINED_RATIO = 1e-12
"""r̃(t) is undefined (NaN) where ‖g‖² ≤ this × ‖ε_cond‖²: g is then rounding noise
(e.g. the oracle after its concept posterior has collapsed, where exactly g = 0)."""


class UndefinedStepsWarning(UserWarning):
    """A measurement in which the CFG term vanishes at some steps, where r̃ (eq. 19) is undefined."""


def warn_undefined(defined: np.ndarray, what: str, stacklevel: int = 3) -> int:
    """Warn (:class:`UndefinedStepsWarning`, one line naming ``what``) when ``defined``
    ((steps, samples) bool, False where the CFG term is zero) has undefined entries; returns
    their number (0: no warning)."""
    d = np.asarray(defined, dtype=bool)
    d = d.reshape(d.shape[0], -1)
    bad = int((~d).sum())
    if bad:
        S, B = d.shape
        every = int((~d).all(1).sum())
        warnings.warn(
            f"{what}: the CFG term is zero at {bad} of {S * B} (step, sample) rows "
            f"({every} of {S} steps for every sample), where r̃ (eq. 19) is undefined and its row is 0: "
            "the prompt names nothing the model tells apart, or the guidance has vanished "
            "(e.g. the oracle after its concept posterior has chosen)",
            UndefinedStepsWarning,
            stacklevel=stacklevel,
        )
    return bad


DUMP_COLUMNS = [c for c in GUIDANCE_COLUMNS if c not in ("model", "t")] + ["alpha_bar"]
"""What aggregation reads of a dump."""


def read_dump(path: str | os.PathLike) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reschrom.io import CorruptFileError

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"guidance dump not found: {p}")
    try:
        pf = pq.ParquetFile(p)
        cols = [c for c in DUMP_COLUMNS if c in pf.schema_arrow.names]
        return pf.read(columns=cols).to_pandas()
    except (pa.ArrowException, OSError) as e:
        raise CorruptFileError(f"corrupt Parquet file {p}: {e}") from None
