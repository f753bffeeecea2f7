"""Names of a package that are imported on first use (PEP 562), so that importing the package stays light.

``reschrom.config`` runs while Snakemake plans the workflow and the figure and theory jobs start
without torch; a package that re-exported its torch-heavy names at import time would undo that.
A package therefore lists its public names and the submodule that defines each, and
:func:`lazy_exports` gives it a module ``__getattr__`` that imports that submodule when a name is
first read (``reschrom.compose.PromptComposer`` imports ``reschrom.compose.composer`` then), and a
``__dir__`` that lists them. This is not a way around an import cycle: inside the library every
module imports a name from the module that defines it (``tests/project/test_layout.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public name ``n`` lives in
    ``package + "." + exports[n]`` (a submodule path relative to the package)."""
    exports = dict(exports)

    def __getattr__(name: str) -> Any:
        sub = exports.get(name)
        if sub is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{sub}"), name)
        globals_of_package = importlib.import_module(package).__dict__
        globals_of_package[name] = value  # later reads skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(importlib.import_module(package).__dict__) | set(exports))

    return __getattr__, __dir__
