"""``python -m local.emulator``: serve Cognito Sync on ``--host``/``--port`` until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from local.emulator.server import Emulator, make_server
from local.emulator.store import StoreError

log = logging.getLogger("local.emulator")


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, start the emulator, serve until told to stop."""
    parser = argparse.ArgumentParser(prog="python -m local.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--state-dir", type=Path, required=True, help="folder for the state file (created)")
    parser.add_argument(
        "--aws-endpoint", required=True, help="where Cognito Identity, IAM, STS, Kinesis and S3 answer (moto)"
    )
    parser.add_argument("--region", default="us-east-1", help="the AWS region the emulator serves (default us-east-1)")
    parser.add_argument("--access-log", action="store_true", help="log every HTTP request")
    args = parser.parse_args(argv)

    # Request threads mostly wait on sockets and SQLite; a shorter GIL switch interval lets them take
    # the interpreter back sooner after each system call (throughput under load, measured).
    sys.setswitchinterval(0.001)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        emulator = Emulator(args.state_dir, args.aws_endpoint, args.region)
    except StoreError as err:
        log.error("%s", err)
        return 2
    try:
        server = make_server(emulator, args.host, args.port, access_log=args.access_log)
    except OSError as err:
        log.error("cannot listen on %s:%d (%s); choose another port with --port", args.host, args.port, err)
        emulator.stop()
        return 2
    emulator.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        # shutdown() waits for serve_forever to return: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "Cognito Sync emulator on http://%s:%d (region %s, AWS at %s, state in %s)",
        args.host,
        args.port,
        args.region,
        args.aws_endpoint,
        args.state_dir,
    )
    try:
        server.serve_forever(poll_interval=0.25)
    finally:
        server.server_close()
        emulator.stop()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
