"""aiorun: a container engine on an async, event-driven core."""

__version__ = "0.1.0"
API_VERSION = "1.45"
