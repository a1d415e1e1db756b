"""The registry client (OCI distribution spec / Docker registry v2): pull, push, login.

Daemon-side only (it imports httpx): the CLI never imports this package.

* :mod:`.remote` — where a reference lives: registry host, repository path, tag/digest.
* :mod:`.auth` — ``WWW-Authenticate`` challenges, the bearer-token and basic flows.
* :mod:`.transport` — :class:`~.transport.RegistryClient`: one registry, TLS or plain HTTP
  (insecure registries), authentication on 401, errors that name the fix.
"""
