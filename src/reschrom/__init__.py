"""reschrom: Resolution Chromatography of Diffusion Models (Hwang, Park and Jo).

Modules, one idea each: :mod:`schedules` (noise schedules, SNR and its inverse),
:mod:`theory` (time adjustment, intensity factor, chromatography), :mod:`pyramid`
(pooling pyramid, resolution bands, Algorithm 1), :mod:`io` (Parquet, atomic writes),
:mod:`plots` (figures), :mod:`config` (config validation).
"""

__version__ = "0.1.0"
