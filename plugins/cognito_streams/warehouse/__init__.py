"""The warehouse: one ``Warehouse`` interface (``base``), two engines (``redshift``, ``postgres``)."""

from __future__ import annotations

from cognito_streams.warehouse.base import Warehouse
from cognito_streams.warehouse.models import (
    BatchToLoad,
    BulkPublishAttempt,
    CheckResult,
    DataQualityError,
    LoadCheckError,
    LoadError,
    LoadReport,
    Manifest,
    ManifestEntry,
    MergeCounts,
    MigrationError,
    WarehouseError,
)

__all__ = [
    "BatchToLoad",
    "BulkPublishAttempt",
    "CheckResult",
    "DataQualityError",
    "LoadCheckError",
    "LoadError",
    "LoadReport",
    "Manifest",
    "ManifestEntry",
    "MergeCounts",
    "MigrationError",
    "Warehouse",
    "WarehouseError",
]
