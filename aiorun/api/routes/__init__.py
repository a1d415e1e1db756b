"""Route modules; each defines ``router = aiorun.api.http.Router()``."""

ROUTE_MODULES = [
    "aiorun.api.routes.system",
    "aiorun.api.routes.images",
    "aiorun.api.routes.pull",
    "aiorun.api.routes.containers",
    "aiorun.api.routes.attach",
    "aiorun.api.routes.archive",
    "aiorun.api.routes.links",
    "aiorun.api.routes.exec",
    "aiorun.api.routes.networks",
    "aiorun.api.routes.volumes",
    "aiorun.api.routes.events",
    "aiorun.api.routes.build",
    "aiorun.api.routes.registry",
]
