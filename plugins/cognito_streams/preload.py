"""What every task process would otherwise import on its start, imported once by the process Airflow forks
the task processes from.

On the path of a change in event mode, each task pays its imports before it does any work: the landing
runner (the decoder: numba, pyarrow, pandas), the AWS hooks, the warehouse drivers — 1–2.5 s per task on the
2-core machine, more under load, five tasks between a change and its commit (docs/performance.md). Airflow
3.3 can have the scheduler's LocalExecutor start its workers from a *forkserver* that imports a list of
modules first; a worker, and every task process it forks, then inherits them copy-on-write::

    [scheduler]
    mp_start_method = forkserver
    mp_forkserver_preload = airflow,cognito_streams.preload

(``airflow`` first: importing it puts the plugins folder on ``sys.path``, where this module lives. The local
stack sets both, ``local/stack.py``; docs/operations.md, "Freshness: Airflow's settings", says what it
costs.) Importing this module also loads the decoder's numba parser from its on-disk cache (``make warm``),
so a landing task does not load it on its first record either. It runs nothing else: no connection is
opened, no thread pool of ours is started.

Python's forkserver ignores a module it cannot import: a landing task logs whether it found the decoder
already imported (``decoder preloaded: yes``), which is how to check that the setting took.
"""

from __future__ import annotations

import gc

# Airflow's side of a task process: the Task SDK the DAG files import, the task runner the worker's fork runs,
# and what that runner imports on every start before it parses the DAG file (listed from a task log with
# PYTHONPROFILEIMPORTTIME=1: the API's security module alone took 1.0-1.6 s of every task).
import airflow.api_fastapi.core_api.security
import airflow.dag_processing.dagbag
import airflow.executors.local_executor
import airflow.sdk
import airflow.sdk.bases.decorator
import airflow.sdk.definitions.asset.metadata
import airflow.sdk.definitions.decorators.setup_teardown
import airflow.sdk.execution_time.supervisor
import airflow.sdk.execution_time.task_runner  # noqa: F401
import jinja2.ext  # noqa: F401
import pyarrow.dataset  # noqa: F401
import pydantic.v1  # noqa: F401

# The hooks the tasks open.
from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook  # noqa: F401
from airflow.providers.amazon.aws.hooks.redshift_sql import RedshiftSQLHook  # noqa: F401
from airflow.providers.standard.decorators import branch_python, python  # noqa: F401

# The DAG files' imports, and what each task imports when it runs.
import cognito_streams.assets
import cognito_streams.dag_defaults
import cognito_streams.landing.mode
import cognito_streams.landing.runner
import cognito_streams.landing.tasks
import cognito_streams.landing.trigger
import cognito_streams.landing_zone.load
import cognito_streams.loading.pace
import cognito_streams.loading.tasks
import cognito_streams.monitoring.samples
import cognito_streams.warehouse.connect
import cognito_streams.warehouse.postgres
import cognito_streams.warehouse.redshift  # noqa: F401
from cognito_streams.core.warm import warm

# The parser's machine code, loaded from the cache (or compiled, if the cache was not warmed).
warm()

# Everything imported so far into the collector's permanent generation, as Airflow does before it forks its
# workers (LocalExecutor._spawn_workers_with_gc_freeze): the collections of a worker and of its task processes
# then never walk these objects, and so never write to (and copy) the pages they share with this process.
gc.freeze()
