"""``[core] hostname_callable`` of the several-workers tier: each worker reports its own name.

Both Celery workers run on this machine, so ``socket.getfqdn()`` would give them one hostname;
a task instance's ``hostname`` then could not say which worker ran it. Each worker's environment
names it (``CM_WORKER_NAME``), as each machine of a real deployment has its own name.
"""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    """This worker's name (``CM_WORKER_NAME``), or the machine's for the other components."""
    return os.environ.get("CM_WORKER_NAME") or socket.getfqdn()
