"""Training the models of paper §4.2 (eq. 20–23).

* :mod:`~reschrom.training.spec` — the objectives and one job's configuration
  (:class:`~reschrom.training.spec.TrainSpec`);
* :mod:`~reschrom.training.checkpoints` — what is trained and saved, and the checkpoints a run
  resumes from;
* :mod:`~reschrom.training.loop` — the reproducible, resumable loop and the rule entry point;
* :mod:`~reschrom.training.samples` — samples of a trained model folder.

May import: :mod:`reschrom.io`, :mod:`reschrom.theory`, :mod:`reschrom.data`, :mod:`reschrom.models`,
:mod:`reschrom.sampling`, :mod:`reschrom.measure` (and the other applications, without a cycle).

Every public name of the submodules is also importable from the package itself
(``reschrom.training.<name>``), imported on first use (:mod:`reschrom.lazy`).
"""

from reschrom.lazy import lazy_exports

EXPORTS: dict[str, str] = {
    'ModelBundle': 'checkpoints',
    'checkpoint_dirs': 'checkpoints',
    'digest_data': 'checkpoints',
    'load_latest_checkpoint': 'checkpoints',
    'restore_checkpoint': 'checkpoints',
    'save_checkpoint': 'checkpoints',
    'NonFiniteLossError': 'loop',
    'save_pipeline': 'loop',
    'train': 'loop',
    'train_from_files': 'loop',
    'sample_images': 'samples',
    'KINDS': 'spec',
    'OBJECTIVES': 'spec',
    'TRAIN_DEFAULTS': 'spec',
    'TrainSpec': 'spec',
    'learning_rate': 'spec',
    'min_snr_weights': 'spec',
    'train_settings': 'spec',
    'v_target': 'spec',
}
"""Public name → the submodule that defines it."""

__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
