"""aiorun as an OCI runtime: ``aiorun-runtime`` (runc's command line) for containerd, podman
and CRI-O, on the same runtime library as the daemon (:mod:`aiorun.runtime`).

Modules: :mod:`.config` (config.json → Plan, pure), :mod:`.state` (records under --root),
:mod:`.init` (the forked children), :mod:`.hooks`, :mod:`.verbs` (the lifecycle),
:mod:`.spec` (``spec`` / ``features`` data), :mod:`.cli` (argument parsing). See
docs/oci-runtime.md.
"""
