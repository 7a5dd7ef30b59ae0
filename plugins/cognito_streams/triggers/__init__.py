"""Old classpaths of our triggers, kept for deployments upgrading from a release before the package-per-feature
layout: Airflow stores a trigger's classpath in its database (a deferred ``cognito_bulk_publish`` task, the
event-mode ``AssetWatcher``) and the triggerer imports it by that path. The triggers live in their features
(``bulk_publish.trigger``, ``landing.trigger``); nothing of ours imports this package. Remove it once no
deployment can hold a trigger serialized before the upgrade (docs/migration.md, "Upgrading to the
package-per-feature layout")."""

from __future__ import annotations
