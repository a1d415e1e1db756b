"""Development shim for ``aiorun_plugins`` (the built-in drivers live in ``plugins/``).

A regular install maps the package straight to ``plugins/`` (pyproject's package-dir). The
development install (``scripts/setup.sh``: ``pip install -e . --config-settings
editable_mode=compat``) only puts the repository root on ``sys.path`` through a plain .pth
entry, which costs nothing at interpreter start-up (setuptools' default editable mode runs
an import-hook module at every start, ~12 ms of every ``aiorun`` command). This package then
resolves its submodules from ``plugins/``, so the working tree's code is what runs.
"""

import os as _os

__path__ = [_os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))),
                          "plugins")]
