"""``python -m local.redshift``: serve the Redshift emulator on ``--host``/``--port`` until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import psycopg

from local.redshift.backend import ISOLATIONS
from local.redshift.server import EmulatorConfig, RedshiftEmulator

log = logging.getLogger("local.redshift")


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, prepare the database, serve until told to stop."""
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(prog="python -m local.redshift", description=__doc__)
    parser.add_argument("--host", default=defaults.host, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--pg-host", default=defaults.pg_host, help="the stack's PostgreSQL host")
    parser.add_argument("--pg-port", type=int, required=True, help="the stack's PostgreSQL port")
    parser.add_argument("--database", default=defaults.database, help="the one database served (default dev)")
    parser.add_argument("--user", default=defaults.user, help="the user clients log in as (default awsuser)")
    parser.add_argument("--password", default=defaults.password, help="that user's password")
    parser.add_argument("--auth", choices=("md5", "password"), default="md5", help="password exchange (default md5)")
    parser.add_argument(
        "--isolation", choices=ISOLATIONS, default="serializable", help="the database's isolation level"
    )
    parser.add_argument("--aws-endpoint", help="where S3 and IAM answer (moto), for COPY from S3")
    parser.add_argument("--region", default=defaults.region, help="the AWS region (default us-east-1)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    cfg = EmulatorConfig(
        host=args.host,
        port=args.port,
        pg_host=args.pg_host,
        pg_port=args.pg_port,
        database=args.database,
        user=args.user,
        password=args.password,
        auth=args.auth,
        isolation=args.isolation,
        aws_endpoint=args.aws_endpoint,
        region=args.region,
    )
    emulator = RedshiftEmulator(cfg)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await emulator.serve_until(stop)

    try:
        asyncio.run(serve())
    except OSError as err:
        log.error("cannot listen on %s:%d (%s); choose another port with --port", args.host, args.port, err)
        return 2
    except psycopg.Error as err:
        log.error("cannot prepare database %s on PostgreSQL %s:%d: %s", args.database, args.pg_host, args.pg_port, err)
        return 2
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
