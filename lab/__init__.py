"""mirrorlab: a one-machine lab that emulates a Contrail-style cloud and its interface mirroring.

The library is `Lab` (bring a lab up, run commands in its VMs, capture, read flows) and
`Capture`; every problem is a `LabError`. See `mirrorlab.driver`. `mirrorlab.testing` holds
the pytest plugin (`mirrorlab_lab` fixture) and the software flow table (`flowsim`).
"""
from __future__ import annotations

__all__ = ["Lab", "Capture", "LabError", "ApiError", "UsageError", "ExecResult", "InstalledFlow"]

_HOMES = {"Lab": "driver", "Capture": "driver", "ExecResult": "driver", "InstalledFlow": "driver",
          "LabError": "errors", "ApiError": "errors", "UsageError": "errors"}


def __getattr__(name: str):
    # Imported on first use: the lab's own processes (bring-up, recorders) import submodules of
    # this package and need none of the driver's imports (the controller's API among them).
    if name in _HOMES:
        import importlib
        return getattr(importlib.import_module(f"mirrorlab.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'mirrorlab' has no attribute {name!r}")
