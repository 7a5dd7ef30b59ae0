"""Shared: the S3 landing zone, the contract between the features: batches written (``writer``), listed
(``descriptors``) and read (``reader``), the checkpoint and snapshot stores, and the load of landed batches
into the warehouse (``load``: the loader's and the snapshot's)."""

from __future__ import annotations
