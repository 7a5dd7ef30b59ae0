"""``cognito_streams_configure``: the Kinesis stream, the publish role and each pool's Cognito Streams settings
(adapters; the rules are ``core.configure``)."""

from __future__ import annotations
