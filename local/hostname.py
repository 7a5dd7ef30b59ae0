"""The name a local Airflow process gives as its machine's (``[core] hostname_callable``).

``CS_EXECUTOR=celery make up`` runs two Celery workers on one machine as if on two: each is started
with its own ``CS_MACHINE_NAME`` (``worker-1``, ``worker-2``), which Airflow records as the
``hostname`` of every task instance it runs. Kept tiny: Airflow imports it in every process.
"""

from __future__ import annotations

import os
import socket

MACHINE_NAME_ENV = "CS_MACHINE_NAME"


def machine_name() -> str:
    """``CS_MACHINE_NAME`` when set, else the host's fully qualified name (Airflow's default)."""
    return os.environ.get(MACHINE_NAME_ENV) or socket.getfqdn()
