"""The runtime's contract with the engine (implemented in this package).

The daemon never forks (it has threads). Processes are made by the *spawner*: a small,
single-threaded helper process started by the daemon, which outlives a daemon crash so that
containers keep running and their exit statuses are not lost. It is the parent (subreaper) of
every container; it writes each container's JSON-lines log and its exit status to disk, and
forwards output of attached processes to the daemon.

    rt = Runtime(paths)
    await rt.connect()                       # start or re-join the spawner
    pid = await rt.create(spec)              # namespaces made, cgroup joined, paused before exec
    ...network setup on /proc/<pid>/ns/net...
    await rt.start(spec.id)                  # execve; raises ExecFailed (exit 126/127 style)
    status = await rt.wait(spec.id)          # no polling; works for re-adopted containers
    await rt.delete(spec.id)                 # remove cgroup and runtime files after exit
"""
