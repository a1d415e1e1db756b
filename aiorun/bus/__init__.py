"""The event bus: sequence-numbered events, a journal, and msgpack subscribers.

The engine only needs :class:`aiorun.bus.bus.EventBus` and its ``emit`` method.
"""
