"""Installs ``local.fileaudit`` in every Python process started with this folder on ``PYTHONPATH`` and
``CS_FILE_AUDIT`` set (the multi-worker tests); does nothing otherwise."""

from __future__ import annotations

import os

if os.environ.get("CS_FILE_AUDIT"):
    from local.fileaudit import install_from_env

    install_from_env()
