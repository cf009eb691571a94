"""`contrail-api-cli` (PyPI 0.3.0, its last release, 2019), the shell Contrail engineers browse
the configuration API with, run on this Python: `python -m mirrorlab.apicli --host 127.0.0.1
--port 8082 ls virtual-network` takes the tool's own arguments and runs its own `main`.

Its code is not copied here. scripts/setup.sh installs it without its pins (`gevent<1.3`
cannot build on Python 3.11; pyproject.toml's test extra lists what it really needs), and three
things it relies on are put back first, as Python 3.6 had them:
- `collections.Sequence`, `Mapping` and `Iterable`, which Python 3.10 left in `collections.abc`
  only (its utils module subclasses `collections.Sequence` at import);
- a generator ending with `raise StopIteration`, which Python 3.7 turned into a RuntimeError
  (PEP 479): the generators of `STOPPING_GENERATORS` end quietly again, as they did;
- pathlib's `_from_parsed_parts(drv, root, parts, init)`, whose `init` Python 3.10 dropped: its
  `Path` (API paths such as /virtual-network/UUID) passes it on, so every `/` join failed.
Socket and ssl are patched by gevent before anything imports ssl: the tool patches them itself
after `requests` did, and gevent warned about it on every run.
"""
from __future__ import annotations

import collections
import collections.abc
import functools
import importlib
import os
import pathlib
import sys

# Every generator of contrail-api-cli 0.3.0 that stops with `raise StopIteration`, by module.
STOPPING_GENERATORS = {
    "contrail_api_cli.command": ["_path_to_resources"],
    "contrail_api_cli.parser": ["CommandParser.used_args"],
    "contrail_api_cli.resource": ["Collection._sanitize_uuid", "ResourceCache.get_completions"],
    "contrail_api_cli.completer": ["ShellCompleter.get_completions"],
}
MOVED_TO_ABC = ("Sequence", "Mapping", "Iterable")


def stopping_quietly(generator_function):
    """`generator_function` with its pre-PEP 479 ending: a StopIteration raised in its body ends
    it rather than raising RuntimeError."""
    @functools.wraps(generator_function)
    def generator(*args, **kwargs):
        try:
            yield from generator_function(*args, **kwargs)
        except RuntimeError as err:
            if not isinstance(err.__cause__, StopIteration):
                raise
    return generator


def make_compatible() -> None:
    """Put back what contrail-api-cli needs from Python 3.6 (see the module's docstring)."""
    from gevent import monkey
    monkey.patch_socket()
    monkey.patch_ssl()
    for name in MOVED_TO_ABC:
        setattr(collections, name, getattr(collections.abc, name))
    for module_name, names in STOPPING_GENERATORS.items():
        module = importlib.import_module(module_name)
        for name in names:
            owner_name, _, attribute = name.rpartition(".")
            owner = getattr(module, owner_name) if owner_name else module
            current = vars(owner)[attribute]
            setattr(owner, attribute, property(stopping_quietly(current.fget))
                    if isinstance(current, property) else stopping_quietly(current))
    from contrail_api_cli.utils import Path
    Path._from_parsed_parts = classmethod(_path_from_parsed_parts)


def _path_from_parsed_parts(cls, drv, root, parts):
    """contrail-api-cli's `Path._from_parsed_parts` (which resolves `..` in API paths), with
    pathlib's signature since Python 3.10: without `init`, which its own passes on."""
    if parts:
        parts = [root] + os.path.relpath(os.path.join(*parts), start=root).split(os.path.sep)
        parts = [p for p in parts if p not in (".", "")]
    return pathlib.PurePosixPath._from_parsed_parts.__func__(cls, drv, root, parts)


def main() -> None:
    """Run contrail-api-cli with this process's arguments."""
    if sys.version_info >= (3, 12):
        sys.exit("mirrorlab.apicli: contrail-api-cli 0.3.0 runs on Python 3.11 at most: it "
                 "subclasses pathlib's _PosixFlavour, which Python 3.12 removed")
    make_compatible()
    from contrail_api_cli.main import main as contrail_api_cli_main
    sys.argv[0] = "contrail-api-cli"
    contrail_api_cli_main()


if __name__ == "__main__":
    main()
