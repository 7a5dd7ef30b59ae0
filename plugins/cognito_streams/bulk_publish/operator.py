"""``BulkPublishOperator``: one pool's bulk publish, within Cognito Sync's limits, waiting deferred.

Flow: read ``GetBulkPublishDetails`` and the pool's streaming status -> decide (pure,
``core.bulk_publish.decide``) -> start / wait / skip / fail. Waits are deferred to the triggerer
(``BulkPublishTrigger`` for an outcome, ``DateTimeTrigger`` for eligibility), so no worker slot is
held. The outcome taken is the awaited publish's own: a SUCCEEDED/FAILED that started before the
request (``core.bulk_publish.OutcomeFilter``) is an earlier publish, and the wait goes on. Every
attempt and outcome is written to the warehouse table ``bulk_publish_runs``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError

from cognito_streams.bulk_publish.history import BulkPublishRecorder
from cognito_streams.bulk_publish.trigger import BulkPublishTrigger
from cognito_streams.core.bulk_publish import (
    Action,
    BulkPublishState,
    OutcomeFilter,
    Plan,
    decide,
    next_eligible_at,
    parse_time,
)
from cognito_streams.hooks.cognito_sync import CognitoSyncHook
from cognito_streams.settings import PipelineSettings, load_settings

log = logging.getLogger(__name__)


class BulkPublishOperator(BaseOperator):
    """Start (when allowed) and await one identity pool's bulk publish.

    :param identity_pool_id: the pool.
    :param wait_until_eligible: when the pool had a successful bulk publish less than 24 hours ago,
        wait (deferred) until it is eligible and start then, instead of skipping. For manual backfills.
    """

    template_fields = ("identity_pool_id", "wait_until_eligible")
    ui_color = "#f3e0c9"

    def __init__(self, *, identity_pool_id: str, wait_until_eligible: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.identity_pool_id = identity_pool_id
        self.wait_until_eligible = wait_until_eligible

    # -- helpers ----------------------------------------------------------------------------
    def _settings(self) -> PipelineSettings:
        return load_settings()

    def _state(self, hook: CognitoSyncHook) -> BulkPublishState:
        return BulkPublishState.from_api(
            hook.get_bulk_publish_details(self.identity_pool_id), hook.get_configuration(self.identity_pool_id)
        )

    def _recorder(self, settings: PipelineSettings, context: Any) -> BulkPublishRecorder:
        return BulkPublishRecorder(
            settings,
            attempt_id=f"{context['run_id']}/{self.identity_pool_id}",
            identity_pool_id=self.identity_pool_id,
            dag_run_id=context["run_id"],
        )

    def _wants_wait(self) -> bool:
        value = self.wait_until_eligible
        return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes")

    # -- entry points -----------------------------------------------------------------------
    def execute(self, context: Any) -> dict[str, Any]:
        """Decide and act (see the module docstring)."""
        settings = self._settings()
        hook = CognitoSyncHook(aws_conn_id=settings.aws_conn_id)
        recorder = self._recorder(settings, context)
        read_at = datetime.now(UTC)
        state = self._state(hook)
        plan = decide(state, datetime.now(UTC), wait_until_eligible=self._wants_wait())
        log.info("pool %s: %s — %s", self.identity_pool_id, plan.action.value, plan.reason)
        return self._act(plan, settings, hook, recorder, state, read_at)

    def _act(
        self,
        plan: Plan,
        settings: PipelineSettings,
        hook: CognitoSyncHook,
        recorder: BulkPublishRecorder,
        state: BulkPublishState,
        read_at: datetime,
    ) -> dict[str, Any]:
        """Carry out ``plan``, decided on ``state`` as read at ``read_at`` (this worker's clock)."""
        if plan.action is Action.FAIL:
            recorder.record(decision=plan.action.value, status="REFUSED", reason=plan.reason)
            raise AirflowFailException(f"bulk publish of {self.identity_pool_id} cannot run: {plan.reason}")
        if plan.action is Action.SKIP:
            return self._skip(plan, recorder)
        if plan.action is Action.WAIT_UNTIL_ELIGIBLE:
            assert plan.next_eligible_at is not None  # noqa: S101
            recorder.record(
                decision=plan.action.value,
                status="WAITING_FOR_ELIGIBILITY",
                reason=plan.reason,
                next_eligible_at=plan.next_eligible_at,
            )
            log.info(
                "pool %s: waiting (deferred) until %s to start",
                self.identity_pool_id,
                plan.next_eligible_at.isoformat(),
            )
            self.defer(
                trigger=DateTimeTrigger(moment=plan.next_eligible_at + timedelta(seconds=1)),
                method_name="resume_when_eligible",
            )
        if plan.action is Action.WAIT:
            recorder.record(decision=plan.action.value, status="IN_PROGRESS", reason=plan.reason)
            return self._defer_for_outcome(settings, OutcomeFilter.for_running(state.started_at))
        return self._start(settings, hook, recorder, plan, state, read_at)

    def _skip(self, plan: Plan, recorder: BulkPublishRecorder) -> dict[str, Any]:
        eligible = plan.next_eligible_at.isoformat() if plan.next_eligible_at else None
        recorder.record(
            decision=Action.SKIP.value, status="SKIPPED", reason=plan.reason, next_eligible_at=plan.next_eligible_at
        )
        log.info("pool %s: skipped; next eligible at %s", self.identity_pool_id, eligible)
        return {
            "identity_pool_id": self.identity_pool_id,
            "action": "skipped",
            "reason": plan.reason,
            "next_eligible_at": eligible,
        }

    def _start(
        self,
        settings: PipelineSettings,
        hook: CognitoSyncHook,
        recorder: BulkPublishRecorder,
        plan: Plan,
        state: BulkPublishState,
        read_at: datetime,
    ) -> dict[str, Any]:
        skew = timedelta(seconds=settings.bulk_publish_clock_skew_seconds)
        requested_at = datetime.now(UTC)
        try:
            hook.bulk_publish(self.identity_pool_id)
        except ClientError as err:
            code = hook.error_code(err)
            if code == "DuplicateRequestException":
                log.info("pool %s: another bulk publish is in progress; waiting for it", self.identity_pool_id)
                recorder.record(
                    decision=Action.WAIT.value,
                    status="IN_PROGRESS",
                    requested_at=requested_at,
                    reason="DuplicateRequestException: one is already in progress",
                )
                # Started by someone else after our read: not before it, and not the one we read.
                return self._defer_for_outcome(settings, OutcomeFilter.after_request(read_at, skew, state.started_at))
            if code == "AlreadyStreamedException":
                # Our view was stale (a success completed meanwhile): decide again from fresh details.
                fresh_at = datetime.now(UTC)
                state = self._state(hook)
                fresh = decide(state, datetime.now(UTC), wait_until_eligible=self._wants_wait())
                if fresh.action in (Action.SKIP, Action.WAIT_UNTIL_ELIGIBLE):
                    return self._act(fresh, settings, hook, recorder, state, fresh_at)
                return self._skip(self._refused_as_already_streamed(state, err), recorder)
            recorder.record(
                decision=Action.START.value,
                status="REFUSED",
                requested_at=requested_at,
                reason=f"{code}: {err.response.get('Error', {}).get('Message')}",
            )
            raise
        log.info("pool %s: bulk publish requested (%s)", self.identity_pool_id, plan.reason)
        recorder.record(decision=Action.START.value, status="REQUESTED", requested_at=requested_at, reason=plan.reason)
        return self._defer_for_outcome(settings, OutcomeFilter.after_request(requested_at, skew, state.started_at))

    def _refused_as_already_streamed(self, state: BulkPublishState, err: ClientError) -> Plan:
        """Cognito says not yet eligible while the fresh details, by this worker's clock, say it is.

        Cognito's own clock decides; ours reads later than it (clock skew), or Cognito counts a
        success the details do not show. The next eligible time by Cognito's timestamps is still the
        best one we can give (Cognito's message is kept verbatim in the reason)."""
        eligible = next_eligible_at(state)
        message = err.response.get("Error", {}).get("Message")
        if eligible is None:
            reason = f"Cognito refused with AlreadyStreamedException ({message}); no successful bulk publish is known"
        else:
            reason = (
                f"Cognito refused with AlreadyStreamedException ({message}) although by this worker's clock the "
                f"last success ({state.completed_at:%Y-%m-%d %H:%M:%S} UTC) is 24 hours old: Cognito's clock is "
                f"behind ours; next eligible at {eligible:%Y-%m-%d %H:%M:%S} UTC by Cognito's timestamps, later "
                "by the clock difference"
            )
        return Plan(Action.SKIP, reason, eligible)

    def _defer_for_outcome(self, settings: PipelineSettings, wanted: OutcomeFilter) -> dict[str, Any]:
        timeout_at = datetime.now(UTC).timestamp() + settings.bulk_publish_timeout_seconds
        log.info("pool %s: waiting (deferred) for the bulk publish %s", self.identity_pool_id, wanted.describe())
        self.defer(
            trigger=BulkPublishTrigger(
                identity_pool_id=self.identity_pool_id,
                aws_conn_id=settings.aws_conn_id,
                poll_seconds=settings.bulk_publish_poll_seconds,
                timeout_at=timeout_at,
                not_before=wanted.not_before.timestamp() if wanted.not_before else None,
                superseded_start=wanted.superseded_start.timestamp() if wanted.superseded_start else None,
            ),
            method_name="execute_complete",
        )
        raise AssertionError("unreachable: defer() raises")  # pragma: no cover

    def resume_when_eligible(self, context: Any, event: Any = None) -> dict[str, Any]:
        """Back from the eligibility wait: decide again (usually START now)."""
        return self.execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        """Back from the triggerer with the outcome."""
        settings = self._settings()
        recorder = self._recorder(settings, context)
        details = event.get("details") or {}
        status = event.get("status")
        started, completed = details.get("BulkPublishStartTime"), details.get("BulkPublishCompleteTime")
        if event.get("timed_out") and event.get("stale"):
            shown = parse_time(started)
            when = f"{shown:%Y-%m-%d %H:%M:%S} UTC" if shown else "an unknown time"
            why = (
                f"GetBulkPublishDetails still shows an earlier bulk publish ({status}, started at {when}) after "
                f"bulk_publish_timeout_seconds={settings.bulk_publish_timeout_seconds:g}, not the one this task waited "
                "for: Cognito never showed it as started"
            )
            recorder.record(decision="wait", status="TIMED_OUT", reason=why)
            raise AirflowFailException(
                f"bulk publish of {self.identity_pool_id}: {why}. Its earlier outcome is not reported as this "
                "attempt's. Run cognito_bulk_publish again: it reads the status afresh and waits for a publish in "
                "progress, or starts one; if this persists, look at the pool's bulk publish in the Cognito console"
            )
        if event.get("timed_out"):
            recorder.record(
                decision="wait",
                status="TIMED_OUT",
                started_at=started,
                reason=f"still {status} after bulk_publish_timeout_seconds={settings.bulk_publish_timeout_seconds:g}",
            )
            raise AirflowFailException(
                f"bulk publish of {self.identity_pool_id} is still {status} after "
                f"{settings.bulk_publish_timeout_seconds:g} s (bulk_publish_timeout_seconds); it goes on in Cognito: "
                "run cognito_bulk_publish again to keep waiting for it (it does not start another one), or raise "
                "bulk_publish_timeout_seconds in the cognito_pipeline Variable if publishes of this pool take longer"
            )
        if status == "FAILED":
            message = details.get("FailureMessage") or "no FailureMessage given"
            recorder.record(
                decision="wait", status="FAILED", started_at=started, completed_at=completed, failure_message=message
            )
            raise AirflowFailException(f"bulk publish of {self.identity_pool_id} FAILED: {message}")
        recorder.record(decision="wait", status="SUCCEEDED", started_at=started, completed_at=completed)
        log.info(
            "pool %s: bulk publish SUCCEEDED (started %s, completed %s)", self.identity_pool_id, started, completed
        )
        return {
            "identity_pool_id": self.identity_pool_id,
            "action": "published",
            "started_at": started,
            "completed_at": completed,
        }
