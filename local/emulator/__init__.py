"""A local Amazon Cognito Sync: the rest-json API boto3's ``cognito-sync`` client speaks, Cognito
Streams publishing to Kinesis (moto), bulk publish, and test controls under ``/_emulator/``.

Run it with ``python -m local.emulator --host H --port P --state-dir DIR --aws-endpoint URL
--region R`` (``make stack-up`` does); drive its test controls with
:class:`local.emulator.control.EmulatorControl`. What it implements and where it differs from AWS:
``docs/emulator.md``.
"""
