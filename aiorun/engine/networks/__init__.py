"""Networks: the :class:`NetworkManager` and its parts (one job per module).

* :mod:`.manager`   — the manager: lifecycle, attach/detach, network objects (its docstring
  is the contract);
* :mod:`.records`   — networks, members and ``network connect`` records, and their files;
* :mod:`.drivers`   — loading network drivers from entry points;
* :mod:`.plan`      — what a container's network mode takes, from driver capabilities;
* :mod:`.connect`   — ``network connect``/``disconnect`` and rejoining at start;
* :mod:`.names`     — hosts files and per-network name servers;
* :mod:`.hostsfile` — the managed peers section of a hosts file;
* :mod:`.views`     — Docker-shaped NetworkSettings, network inspect, ``network ls`` filters.
"""

from .hostsfile import HOSTS_MARK, write_hosts_section
from .manager import Forbidden, NetworkManager
from .plan import NetnsMode, NetworkPlan

__all__ = ["NetworkManager", "Forbidden", "NetworkPlan", "NetnsMode", "HOSTS_MARK",
           "write_hosts_section"]
