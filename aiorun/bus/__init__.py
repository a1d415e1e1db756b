"""The event bus: sequence-numbered events, a journal, and msgpack subscribers.

The engine only needs :class:`aiorun.bus.bus.EventBus` and its ``emit`` method.

==================  ==========================================================================
``bus``             EventBus (emit, listeners, bounded subscriptions, replay), ``stream_batches``
``journal``         bounded, rotated segment files under ``paths.events``; replay by seq/time
``codec``           the msgpack wire format (message types; see ``docs/events.md``)
``filters``         Docker-style event filters
``server``          ``serve_bus(engine)``: the unix socket at ``paths.bus_socket``
``client``          ``BusClient``: a blocking and an async subscriber with automatic replay
``subscribers``     the shipped ``logging`` and ``metrics`` subscribers (plugin or process)
``times``           since/until parsing shared by the API and the CLI
``bench``           throughput to one subscriber (``python -m aiorun.bus.bench``)
==================  ==========================================================================
"""
