"""Time-dependent prompt composing (paper §4.3, eq. 6 and 25).

* :mod:`~reschrom.compose.weights` — the weight functions w_i(t) (Heaviside, fades, band-targeted);
  **a new weighting (guidance rule over time) goes here** (:func:`~reschrom.compose.weights.make_weights`);
* :mod:`~reschrom.compose.composer` — :class:`~reschrom.compose.composer.PromptComposer`, the hook
  that applies them to an unmodified diffusers CFG pipeline;
* :mod:`~reschrom.compose.sweep` — composing sweeps over η (the rule entry point);
* :mod:`~reschrom.compose.pairs` — prompt pairs, their ids and the sweep's summary tables
  (runs at planning time).

May import: :mod:`reschrom.io`, :mod:`reschrom.theory`, :mod:`reschrom.data`, :mod:`reschrom.models`,
:mod:`reschrom.sampling`, :mod:`reschrom.measure` (and the other applications, without a cycle).

Every public name of the submodules is also importable from the package itself
(``reschrom.compose.<name>``), imported on first use (:mod:`reschrom.lazy`).
"""

from reschrom.lazy import lazy_exports

EXPORTS: dict[str, str] = {
    'PromptComposer': 'composer',
    'StepRecord': 'composer',
    'encode_prompt': 'composer',
    'load_png': 'composer',
    'save_png': 'composer',
    'to_chw': 'composer',
    'COMPOSE_COLUMNS': 'pairs',
    'aggregate_compose': 'pairs',
    'eta_label': 'pairs',
    'expand_pairs': 'pairs',
    'find_pair': 'pairs',
    'pair_id': 'pairs',
    'pair_ids': 'pairs',
    'sweep_etas': 'pairs',
    'compose_sweep': 'sweep',
    'model_schedule_table': 'sweep',
    'run_compose_pair': 'sweep',
    'BandWeight': 'weights',
    'Heaviside': 'weights',
    'LinearFade': 'weights',
    'SigmoidFade': 'weights',
    'WEIGHTINGS': 'weights',
    'WeightFn': 'weights',
    'band_weights': 'weights',
    'heaviside_weights': 'weights',
    'linear_weights': 'weights',
    'make_weights': 'weights',
    'sigmoid_weights': 'weights',
    'split_levels': 'weights',
}
"""Public name → the submodule that defines it."""

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
