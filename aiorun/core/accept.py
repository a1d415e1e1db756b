"""What an error from ``accept()`` means for a server's accept loop (pure).

Every listening socket of the daemon (the HTTP API, the event bus) must survive running out
of file descriptors: ``EMFILE`` is the kernel saying "not now", not "never". The loops ask
:func:`accept_error_kind` and back off :data:`ACCEPT_BACKOFF` seconds on exhaustion instead
of ending the server.
"""

from __future__ import annotations

import errno

#: Pause of an accept loop after an fd/memory exhaustion error (the pending connection stays
#: in the backlog; retrying at once would spin).
ACCEPT_BACKOFF = 0.1

#: accept() errors that mean "out of fds or memory right now": wait and retry.
EXHAUSTION_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: accept() errors about one connection that vanished before it was accepted: retry at once.
TRANSIENT_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN,
                              errno.EPERM})


def accept_error_kind(exc: BaseException) -> str:
    """``"exhausted"`` (out of fds/memory: back off, retry), ``"transient"`` (that one
    connection is gone: retry at once) or ``"fatal"`` (let it propagate).

    anyio wraps the ``OSError`` in ``BrokenResourceError`` (``__cause__``) on both backends."""
    err = exc if isinstance(exc, OSError) else exc.__cause__
    if isinstance(err, OSError):
        if err.errno in EXHAUSTION_ERRNOS:
            return "exhausted"
        if err.errno in TRANSIENT_ERRNOS:
            return "transient"
    return "fatal"
