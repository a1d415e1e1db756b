"""The one error base of aiorun-runtime: anything raised as an :class:`OciError` is a
message for the user (printed, logged for containerd, exit status 1); anything else is a
bug and keeps its traceback. Kept import-free: the CLI loads it on every call."""


class OciError(Exception):
    pass


class UsageError(OciError):
    """The command line is wrong."""


class VerbError(OciError):
    """A verb cannot proceed (wrong status, id in use, ...)."""


class StateError(OciError):
    """A container's record under --root is missing or unreadable."""


class ConfigError(OciError):
    """config.json cannot be run; the message names the property."""


class HookError(OciError):
    """A hook failed; the message names it and what it said."""
