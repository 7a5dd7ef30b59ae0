"""Print the IAM policy documents for a deployment, rendered from its ``cognito_pipeline`` settings.

    PYTHONPATH=plugins python -m cognito_streams.configure.iam_cli --settings pipeline.json --region eu-west-1

``--settings`` is the Variable's JSON (a file, or ``-`` for stdin; default: the environment variable
``AIRFLOW_VAR_COGNITO_PIPELINE``). The account and partition come from ``publish_role_arn``; the
worker's Cognito permissions are scoped to ``identity_pool_ids`` (render again after adding a pool).
Output: one JSON object, document name -> policy document, ready for ``aws iam create-role`` /
``put-role-policy`` / ``create-policy`` or your infrastructure code. ``cognito-publish-role.boundary``
is the managed policy to create as ``publish_role_boundary_arn`` (default name
``cognito-streams-publish-boundary``) before ``manage_publish_role`` can create the publish role.
"""

from __future__ import annotations

import argparse
import os
import sys

import orjson

from cognito_streams.core.configure.iam import RoleArn, shipped_policies
from cognito_streams.settings import SettingsError, parse_settings


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m cognito_streams.configure.iam_cli", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--settings", help="the cognito_pipeline JSON: a file path or '-' (default: the env var)")
    parser.add_argument("--region", required=True, help="AWS region of the stream and pools, e.g. us-east-1")
    args = parser.parse_args(argv)
    if args.settings == "-":
        raw = sys.stdin.read()
    elif args.settings:
        with open(args.settings, encoding="utf-8") as fh:
            raw = fh.read()
    else:
        raw = os.environ.get("AIRFLOW_VAR_COGNITO_PIPELINE", "")
    try:
        settings = parse_settings(raw)
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    role = RoleArn.parse(settings.publish_role_arn)
    docs = shipped_policies(
        partition=role.partition,
        region=args.region,
        account_id=role.account_id,
        stream_name=settings.stream_name,
        bucket=settings.landing_bucket,
        prefix=settings.landing_prefix,
        publish_role_arn=settings.publish_role_arn,
        identity_pool_ids=settings.identity_pool_ids,
        boundary_arn=settings.boundary_arn,
        trust_condition=settings.publish_role_trust_condition,
    )
    sys.stdout.write(orjson.dumps(docs, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
