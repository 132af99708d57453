"""veRL's plugin entry point: makes the ``entropymon_*`` trainer modes exist, at no cost until veRL uses them.

veRL imports every ``verl.plugins`` entry point while ``import verl`` runs, in the driver and in
every Ray worker (``VERL_USE_EXTERNAL_PLUGINS=none`` turns that off). Importing veRL's v1 trainer
there would cost each worker seconds and pull in its engines, so this module only puts a
one-shot import hook on ``sys.meta_path``: when something imports ``verl.trainer.ppo.v1`` (the
task runner does, to look up ``trainer.v1.trainer_mode``), the trainers of
``entropymon.integrations.verl`` are registered right after that package has loaded.

veRL swallows a plugin's errors at debug level, so a failure here is reported with entropymon's
own warning. Imported without veRL (by a test, a linter), it does nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings

TRAINER_PACKAGE = "verl.trainer.ppo.v1"


def register_after_import() -> None:
    """Register entropymon's trainers now if veRL's v1 trainer is loaded, else once it is."""
    if TRAINER_PACKAGE in sys.modules:
        _register()
    elif not any(isinstance(finder, _AfterTrainerImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterTrainerImport())


def _register() -> None:
    try:
        from entropymon.integrations.verl import register_trainers

        register_trainers()
    except Exception as error:  # noqa: BLE001 - a plugin must never break veRL's import
        warnings.warn(f"entropymon: could not register its veRL trainers ({type(error).__name__}: {error}); "
                      "veRL runs without entropymon", RuntimeWarning, stacklevel=2)


class _AfterTrainerImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of ``verl.trainer.ppo.v1`` to register after it ran."""

    def find_spec(self, name, path=None, target=None):
        if name != TRAINER_PACKAGE:
            return None
        sys.meta_path.remove(self)  # one shot; also keeps the lookup below from finding us again
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _RegisteringLoader(spec.loader)
        return spec


class _RegisteringLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register()

    def __getattr__(self, name):  # get_resource_reader, is_package ...: the real loader's
        return getattr(self._loader, name)


if "verl" in sys.modules:  # loaded by veRL's entry-point discovery, not by a plain import
    register_after_import()
