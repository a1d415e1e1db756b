"""The engine: the daemon's root task group and the managers it supervises.

``aiorun.engine.daemon.Engine`` owns, in start order (each manager has ``__init__(engine)``,
``async start()`` and ``async stop()``):

====================  ======================================  =======================
attribute             class                                   module
====================  ======================================  =======================
``paths``             :class:`aiorun.config.Paths`
``events``            :class:`aiorun.bus.bus.EventBus`        ``aiorun.bus``
``storage``           a :class:`StorageDriver`                ``aiorun_plugins.storage``
``images``            ``ImageStore``                          ``aiorun.images.store``
``runtime``           ``Runtime``                             ``aiorun.runtime``
``networks``          ``NetworkManager``                      ``aiorun.engine.networks``
``volumes``           ``VolumeManager``                       ``aiorun.engine.volumes``
``containers``        ``ContainerManager``                    ``aiorun.engine.containers``
``task_group``        the root ``anyio`` task group (nursery)
====================  ======================================  =======================
"""
