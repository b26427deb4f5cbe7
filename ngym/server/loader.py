"""The one way ngym loads a server's ``app.py`` into a running process.

A server module ends with ``if __name__ == "__main__": MyServer.run_webserver()``. ``ng_run``
runs it as a script, in its own process (``python app.py``). Inside a process —
co-located servers (:mod:`ngym.server.host`), the conformance check (:mod:`ngym.devkit.conformance`)
— :func:`load_app` runs the file the same way, with its folder first on ``sys.path``, and
records the classes whose ``run_webserver()`` it called instead of serving them
(:func:`claim`, called by :meth:`~ngym.server.base.Server.run_webserver`). Sibling modules the
file imported (its own ``utils.py``) are forgotten afterwards, so two servers' siblings never
shadow each other.
"""

from __future__ import annotations

import itertools
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

from ngym.errors import DeploymentError

_counter = itertools.count()
#: classes whose run_webserver() the module being loaded called (None: no load in progress)
_claimed: list[type] | None = None


@dataclass(slots=True)
class LoadedApp:
    """A loaded ``app.py``: its module and the server classes it asked to serve."""

    path: Path
    module: types.ModuleType
    served: list[type] = field(default_factory=list)


def claim(cls: type) -> bool:
    """Record ``cls`` as served by the module :func:`load_app` is running; False when no load is
    in progress (the caller then serves for real)."""
    if _claimed is None:
        return False
    _claimed.append(cls)
    return True


def load_app(path: Path, *, as_main: bool = True, extra_paths: tuple[Path, ...] = ()) -> LoadedApp:
    """Run ``path`` in a fresh module and return it with the classes it served.

    ``as_main``: the module runs with ``__name__ == "__main__"``, as ``python app.py`` runs it, so
    its ``run_webserver()`` is reached (and claimed). Otherwise it is imported like a library
    module (no ``__main__`` block runs). Either way the module is registered in ``sys.modules``
    under a unique name, so type hints of its classes resolve later. ``extra_paths`` are put on
    ``sys.path`` (after the file's folder) while it runs.
    """
    global _claimed
    path = path.resolve()
    if not path.is_file():
        raise DeploymentError(f"{path} does not exist.")
    unique = f"_ngym_app_{path.parent.name}_{next(_counter)}"
    module = types.ModuleType("__main__" if as_main else unique)
    module.__file__ = str(path)
    folder = str(path.parent)
    added = [p for p in (folder, *map(str, extra_paths)) if p not in sys.path]
    sys.path[:0] = added
    modules_before = set(sys.modules)
    main = sys.modules["__main__"]
    if as_main:
        sys.modules["__main__"] = module  # annotations resolve against the module while it runs
    sys.modules[unique] = module
    served: list[type] = []
    outer, _claimed = _claimed, served
    try:
        exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    except BaseException:
        sys.modules.pop(unique, None)
        raise
    finally:
        _claimed = outer
        sys.modules["__main__"] = main
        for p in added:
            sys.path.remove(p)
        # sibling modules of this server (its own utils.py, say) must not shadow another server's
        for name in set(sys.modules) - modules_before:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file.startswith(folder + os.sep):
                del sys.modules[name]
    if as_main:  # classes defined while it was __main__ are found under its unique name from now on
        module.__name__ = unique
        for name, value in vars(module).items():
            if isinstance(value, type) and value.__module__ == "__main__" and getattr(main, name, None) is not value:
                value.__module__ = unique
    sys.modules[unique] = module
    return LoadedApp(path, module, served)
