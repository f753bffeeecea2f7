"""reschrom: Resolution Chromatography of Diffusion Models (Hwang, Park and Jo).

Modules, one idea each:

* theory core — :mod:`schedules` (noise schedules, SNR and its inverse), :mod:`theory` (time
  adjustment τ_m, intensity factor λ^(m), chromatography r_m, eq. 13–18, 34), :mod:`pyramid`
  (D, U, resolution bands of eq. 19, Algorithm 1), :mod:`spectra` (RAPSD);
* data and models — :mod:`data` (datasets and their pyramid), :mod:`registry` (the config's
  ``models:``: one entry per model, the one loader), :mod:`denoisers` (the ε(x_t, ᾱ, cond)
  contract, converters from x0/EDM, v, flow and VE models, the project's DDIM with CFG),
  :mod:`adapters` (diffusers pipelines of every family: IF, SD ε/v, SD3-style flow),
  :mod:`models` (diffusers models built from config), :mod:`levels` (eq. 1, 7, 14–16, 21, 23, 24),
  :mod:`training` (eq. 20–23), :mod:`flow` (the rectified-flow toy model), :mod:`pipelines`
  (the diffusers pipeline loader), :mod:`oracle` (an exact-posterior model);
* measurement — :mod:`probe` (per-step CFG capture), :mod:`chromatography` (prompts, dumps,
  aggregation, agreement), :mod:`trajectory` (x̂0 along sampling, Fig. 1);
* applications — :mod:`sampling` (DDIM/DDPM, eq. 22/24 composites), :mod:`upscale`, :mod:`metrics`,
  :mod:`compose` (eq. 6, 25), :mod:`pairs`;
* plumbing — :mod:`io` (atomic Parquet/safetensors/PNG), :mod:`config` (validation),
  :mod:`joblog` (a job's log; its failure as one line on the console), plots.
"""

__version__ = "0.1.0"
