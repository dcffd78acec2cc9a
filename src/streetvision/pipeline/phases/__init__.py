"""Phase implementations, one module each; importing this package registers every phase in it (a new phase is a
new module here plus its config group: nothing else lists phases)."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
