"""``python -S -m aiorun.runtime.spawner --run DIR [--idle-exit SECONDS]`` (how
:class:`aiorun.runtime.api.Runtime` starts it)."""

import sys

from .server import main

sys.exit(main())
