"""The rules of ``cognito_streams_configure`` (pure): the IAM documents and the Cognito Streams settings."""

from __future__ import annotations
