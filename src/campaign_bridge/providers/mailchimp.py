"""The Mailchimp Marketing API v3 adapter.

How endpoints are chosen (docs/providers.md explains why):

- members not known to exist (``exists`` is not ``True``): batch subscribe ``POST /lists/{id}``
  (500 per call, ``update_existing=false``, status = ``status_if_new``), several calls in flight
  at once; those already on the audience come back ``ERROR_CONTACT_EXISTS`` and fall through to:
- members that exist: ``PUT /lists/{id}/members/{hash}`` with ``status_if_new``, and with
  ``status`` only when the caller approved an explicit change, so a status is never touched
  by accident;
- PUTs, tag changes and archives go through async ``/batches`` when there are at least
  ``batch_threshold`` of them in one call, else directly, in parallel within the key's budget.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

import httpx

from campaign_bridge.config import MailchimpDestination
from campaign_bridge.errors import ProviderError
from campaign_bridge.providers._http import (
    ApiClient,
    HttpBacked,
    RetryPolicy,
    decode_json,
    gather_all,
    gather_both,
    gather_three,
    merge_streams,
)
from campaign_bridge.providers._mailchimp_errors import ErrorKind, Problem, parse_problem, scrub
from campaign_bridge.providers._mailchimp_privacy import delete_permanently, member_export
from campaign_bridge.providers._mailchimp_session import (
    MailchimpSession,
    basic_auth,
    list_missing,
    mailchimp_retriable,
)
from campaign_bridge.providers._mailchimp_wire import (
    BATCH_SUBSCRIBE_MAX,
    MEMBER_FIELDS,
    Operation,
    OpResult,
    activity_events,
    api_base_url,
    audience_from,
    batch_subscribe_body,
    batch_subscribe_error,
    campaign_from,
    classify_op,
    data_centre,
    member_put_body,
    outcome_from_error,
    outcome_from_member,
    parse_time,
    report_from,
    since_param,
    snapshot_from,
    subscriber_hash,
    unsendable_field,
)
from campaign_bridge.providers.base import (
    ActivityEvent,
    Audience,
    Campaign,
    CampaignReport,
    Capabilities,
    DoctorFinding,
    MemberRef,
    MemberSnapshot,
    MemberStatus,
    MemberUpsert,
    Outcome,
    OutcomeKind,
    Removal,
    TagChange,
    activity_event,
)

__all__ = ["CAPABILITIES", "WEBHOOK_EVENTS", "MailchimpProvider"]

logger = logging.getLogger(__name__)

CAPABILITIES = Capabilities(
    max_batch=BATCH_SUBSCRIBE_MAX,
    max_connections=10,  # Mailchimp's limit of simultaneous connections per API key
    tags=True,
    interests=True,
    marketing_permissions=True,
    double_opt_in=True,
    transactional_status=True,
    language=True,
    rename=True,
    removal=Removal.ARCHIVE,
    webhooks=True,
    webhook_member_events=True,
)

T = TypeVar("T")
U = TypeVar("U")

WEBHOOK_EVENTS = ("subscribe", "unsubscribe", "profile", "cleaned", "upemail", "campaign")
WEBHOOK_SOURCES = ("user", "admin", "api")
# Listing members one status at a time: no overlap between passes, and archived members are
# included whether or not Mailchimp lists them by default.
MEMBER_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
CAMPAIGN_FIELDS = (
    "campaigns.id,campaigns.status,campaigns.create_time,campaigns.send_time,"
    "campaigns.emails_sent,campaigns.recipients.list_id,campaigns.settings.title,"
    "campaigns.settings.subject_line,total_items"
)
# Partial responses (a general Mailchimp feature): a batch-subscribe answer lists every new
# member in full (with _links), megabytes per call; we only need these.
BATCH_SUBSCRIBE_FIELDS = (
    "new_members.id,new_members.contact_id,new_members.email_address,new_members.status,"
    "new_members.last_changed,errors,"
    "total_created,total_updated,error_count"
)

# Email activity: only what an ActivityEvent carries (no _links, list or campaign ids per
# recipient); about half the bytes to send and to decode.
ACTIVITY_FIELDS = (
    "emails.email_address,emails.activity.action,emails.activity.type,"
    "emails.activity.timestamp,emails.activity.url,emails.activity.ip,total_items"
)
UNSUBSCRIBED_FIELDS = (
    "unsubscribes.email_address,unsubscribes.timestamp,unsubscribes.reason,total_items"
)


class MailchimpProvider(HttpBacked):
    """Mailchimp behind the provider contract (``campaign_bridge.providers.base.Provider``)."""

    name = "mailchimp"
    capabilities = CAPABILITIES

    def __init__(
        self,
        destination: MailchimpDestination,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        batch_threshold: int = 100,
        batch_max_operations: int = 2000,
        batch_poll_initial: float = 0.05,
        batch_poll_max: float = 2.0,
        batch_timeout: float = 3600.0,
        page_size: int = 1000,
        webhook_sources: Sequence[str] | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        key = destination.api_key.get_secret_value()
        self.base_url = api_base_url(key, destination.base_url)
        self.data_centre: str | None = None if destination.base_url else data_centre(key)
        self.list_id = destination.list_id
        if webhook_sources is None:
            webhook_sources = destination.webhook_sources
        unknown = set(webhook_sources) - set(WEBHOOK_SOURCES)
        if unknown:
            raise ValueError(f"unknown webhook sources {sorted(unknown)}; use {WEBHOOK_SOURCES}")
        self.webhook_sources = tuple(webhook_sources)
        self._http = ApiClient.for_destination(
            destination,
            base_url=self.base_url,
            api_key=key,
            headers={"Authorization": basic_auth(key)},
            provider=self.name,
            retry=retry,
            retriable=mailchimp_retriable,
            transport=transport,
            sleep=sleep,
        )
        self._session = MailchimpSession(
            self._http,
            provider=self.name,
            data_centre=self.data_centre,
            page_size=page_size,
            batch_threshold=batch_threshold,
            batch_max_operations=batch_max_operations,
            batch_poll_initial=batch_poll_initial,
            batch_poll_max=batch_poll_max,
            batch_timeout=batch_timeout,
            sleep=sleep,
        )

    @property
    def batch_threshold(self) -> int:
        """PUTs, tag changes and archives go through ``/batches`` from this many per call."""
        return self._session.batch_threshold

    @batch_threshold.setter
    def batch_threshold(self, value: int) -> None:
        self._session.batch_threshold = value

    @property
    def page_size(self) -> int:
        return self._session.page_size

    # --- account ----------------------------------------------------------------------------

    async def check(self) -> dict[str, object]:
        ping = await self._session.get_json("/ping")
        root = await self._session.get_json(
            "/",
            {
                "fields": "account_id,account_name,pricing_plan_type,total_subscribers,"
                "account_timezone,pro_enabled"
            },
        )
        facts: dict[str, object] = {
            "provider": self.name,
            "api_base_url": self.base_url,
            "data_centre": self.data_centre,
            "health_status": ping.get("health_status"),
        }
        for name in ("account_id", "account_name", "pricing_plan_type", "total_subscribers"):
            facts[name] = root.get(name)
        facts["account_timezone"] = root.get("account_timezone")
        return facts

    async def audience(self, list_id: str) -> Audience:
        base = f"/lists/{list_id}"

        async def read_list() -> Mapping[str, Any]:
            fields = {"fields": "id,name,double_optin,marketing_permissions"}
            return await self._session.get_json(base, fields, list_id=list_id)

        async def read_merge_fields() -> list[Mapping[str, Any]]:
            return [m async for m in self._session.pages(f"{base}/merge-fields", "merge_fields")]

        async def read_interest_ids() -> list[str]:
            ids: list[str] = []
            async for category in self._session.pages(f"{base}/interest-categories", "categories"):
                path = f"{base}/interest-categories/{category.get('id')}/interests"
                ids += [str(i.get("id")) async for i in self._session.pages(path, "interests")]
            return ids

        # Independent reads, concurrently: at a real API's latency this is most of a short run.
        lst, merge_fields, interest_ids = await gather_three(
            read_list(), read_merge_fields(), read_interest_ids()
        )
        permission_ids: list[str] = []
        if lst.get("marketing_permissions"):
            # Mailchimp lists GDPR permissions only on members: read them from one member.
            sample = await self._session.get_json(
                f"{base}/members",
                {"count": 1, "fields": "members.marketing_permissions"},
                list_id=list_id,
            )
            for member in sample.get("members") or ():
                for perm in member.get("marketing_permissions") or ():
                    permission_ids.append(str(perm.get("marketing_permission_id")))
        return audience_from(lst, merge_fields, interest_ids, permission_ids)

    # --- members ----------------------------------------------------------------------------

    async def upsert_members(self, list_id: str, members: Sequence[MemberUpsert]) -> list[Outcome]:
        _unique_keys(m.key for m in members)
        outcomes: dict[str, Outcome] = {}
        seen: dict[str, MemberUpsert] = {}
        digests: dict[str, str] = {}  # key -> subscriber hash
        to_create: list[MemberUpsert] = []
        to_put: list[MemberUpsert] = []
        to_rename: list[MemberUpsert] = []
        for member in members:
            digest = subscriber_hash(member.email)
            if digest in seen:
                outcomes[member.key] = Outcome(
                    member.key,
                    OutcomeKind.REJECTED,
                    digest,
                    reason_code="duplicate_email",
                    message="another record in the same batch has this address "
                    "(addresses are compared without case); keep one record per address",
                )
                continue
            bad = unsendable_field(member)
            if bad is not None:
                outcomes[member.key] = Outcome(
                    member.key,
                    OutcomeKind.REJECTED,
                    digest,
                    reason_code="invalid_text",
                    message=f"{bad} holds text that is not valid UTF-8 (undecodable bytes in "
                    "the source); fix the value in the source",
                )
                continue
            seen[digest] = member
            digests[member.key] = digest
            if member.previous_email is not None:
                to_rename.append(member)
            elif member.exists is not True:
                to_create.append(member)  # created with status_if_new, or found to exist
            else:
                to_put.append(member)

        async def create() -> tuple[list[MemberUpsert], list[MemberUpsert]]:
            return await self._batch_subscribe(list_id, to_create, outcomes, digests)

        async def put_known() -> dict[str, Outcome]:
            return await self._put_members(list_id, to_put, created={})

        (existing, follow_up), put_outcomes = await gather_both(create(), put_known())
        outcomes.update(put_outcomes)
        outcomes.update(await self._rename_members(list_id, to_rename))
        created = {m.key: outcomes[m.key] for m in follow_up}
        outcomes.update(await self._put_members(list_id, existing + follow_up, created=created))
        return [outcomes[m.key] for m in members]

    async def _batch_subscribe(
        self,
        list_id: str,
        members: Sequence[MemberUpsert],
        outcomes: dict[str, Outcome],
        digests: Mapping[str, str],
    ) -> tuple[list[MemberUpsert], list[MemberUpsert]]:
        """Create ``members``; return (those that already exist, created ones needing a PUT).
        ``digests`` maps each member's key to its subscriber hash."""
        slices = [
            members[i : i + BATCH_SUBSCRIBE_MAX]
            for i in range(0, len(members), BATCH_SUBSCRIBE_MAX)
        ]
        existing: list[MemberUpsert] = []
        follow_up: list[MemberUpsert] = []

        async def one(sent: Sequence[MemberUpsert]) -> None:
            data, chunk = await self._post_batch_subscribe(list_id, sent, outcomes, digests)
            by_email = {m.email.strip().lower(): m for m in chunk}
            by_hash = {digests[m.key]: m for m in chunk}
            done: set[str] = set()
            for item in data.get("new_members") or ():
                member = by_hash.get(str(item.get("id") or "")) or by_email.get(
                    str(item.get("email_address", "")).strip().lower()
                )
                if member is None:
                    continue
                done.add(member.key)
                # Created either way; one with GDPR permissions is PUT again to set them (batch
                # subscribe cannot carry them), and stays created if that PUT fails.
                outcomes[member.key] = outcome_from_member(member.key, OutcomeKind.CREATED, item)
                if member.marketing_permissions:
                    follow_up.append(member)
            for entry in data.get("errors") or ():
                raw = str(entry.get("email_address") or "")
                member = by_email.get(raw.strip().lower())
                if member is None or member.key in done:
                    continue
                done.add(member.key)
                found = batch_subscribe_error(entry, member.email)
                if found.reason_code == "member_exists":
                    existing.append(member)
                else:
                    outcomes[member.key] = outcome_from_error(
                        member.key, digests[member.key], found
                    )
            for member in chunk:
                if member.key not in done:
                    outcomes[member.key] = Outcome(
                        member.key,
                        OutcomeKind.RETRY,
                        digests[member.key],
                        reason_code="no_result",
                        message="Mailchimp's batch answer did not mention this member; "
                        "it will be sent again",
                    )

        await gather_all([one(chunk) for chunk in slices])
        return existing, follow_up

    async def _post_batch_subscribe(
        self,
        list_id: str,
        members: Sequence[MemberUpsert],
        outcomes: dict[str, Outcome],
        digests: Mapping[str, str],
    ) -> tuple[Mapping[str, Any], list[MemberUpsert]]:
        """POST one batch subscribe; return the answer and the members it was about.

        A member that breaks the request schema makes Mailchimp refuse the whole call with a
        400 naming it by position (``members.item:N.field``). Those members are rejected with
        Mailchimp's words and the call goes again without them, so one bad record cannot
        sink the other 499.
        """
        path = f"/lists/{list_id}"
        remaining = list(members)
        while remaining:
            response = await self._session.http.request(
                "POST",
                path,
                params={"fields": BATCH_SUBSCRIBE_FIELDS},
                json=batch_subscribe_body(remaining),
            )
            if response.status_code < 300:
                return self._session.json_object(response, "POST", path), remaining
            problem = parse_problem(
                response.status_code, response.content, response.headers.get("content-type", "")
            )
            named = _members_named(problem, len(remaining)) if response.status_code == 400 else {}
            if not named:
                raise self._session.error(response, "POST", path, list_id=list_id)
            for index, (field, said) in named.items():
                member = remaining[index]
                outcomes[member.key] = Outcome(
                    member.key,
                    OutcomeKind.REJECTED,
                    digests[member.key],
                    reason_code="invalid_member",
                    message=f"Mailchimp refused this member: {field}: {scrub(said)}",
                )
            remaining = [m for i, m in enumerate(remaining) if i not in named]
        return {}, []

    async def _put_members(
        self, list_id: str, members: Sequence[MemberUpsert], *, created: Mapping[str, Outcome]
    ) -> dict[str, Outcome]:
        """PUT ``members``; ``created`` holds the outcomes of those just created (the PUT sets
        what their create could not carry): a failed PUT leaves them created, unfinished."""
        ops = [
            Operation(
                m.key,
                "PUT",
                f"/lists/{list_id}/members/{subscriber_hash(m.email)}",
                member_put_body(m),
                (m.email,),
            )
            for m in members
        ]
        results = await self._session.run(ops, list_id)
        outcomes: dict[str, Outcome] = {}
        for member, op in zip(members, ops, strict=True):
            result = results[op.key]
            if result.status is not None and 200 <= result.status < 300:
                kind = OutcomeKind.CREATED if member.key in created else OutcomeKind.UPDATED
                outcomes[op.key] = outcome_from_member(op.key, kind, result.body or {})
            elif result.status == 404:
                raise list_missing(list_id)
            elif member.key in created:
                failed = self._failed(op, result)
                outcomes[op.key] = replace(
                    created[member.key],
                    reason_code=failed.reason_code,
                    message=f"created, but its GDPR permissions were not set: {failed.message}",
                    follow_up=failed.kind,
                )
            else:
                outcomes[op.key] = self._failed(op, result)
        return outcomes

    async def _rename_members(
        self, list_id: str, members: Sequence[MemberUpsert]
    ) -> dict[str, Outcome]:
        """PATCH the member at ``previous_email`` with the new address: Mailchimp renames it in
        place (status and history kept); a PATCH never creates a member. The new address being
        a member already is refused (400 ``Member Exists``), as is a permanently deleted one."""
        ops: list[Operation] = []
        for m in members:
            assert m.previous_email is not None
            body = member_put_body(m)
            body.pop("status_if_new", None)
            body.pop("tags", None)
            path = f"/lists/{list_id}/members/{subscriber_hash(m.previous_email)}"
            ops.append(Operation(m.key, "PATCH", path, body, (m.email, m.previous_email)))
        results = await self._session.run(ops, list_id)
        outcomes: dict[str, Outcome] = {}
        for member, op in zip(members, ops, strict=True):
            result = results[op.key]
            if result.status is not None and 200 <= result.status < 300:
                outcomes[op.key] = outcome_from_member(
                    op.key, OutcomeKind.UPDATED, result.body or {}
                )
            elif result.status == 404:
                outcomes[op.key] = Outcome(
                    op.key,
                    OutcomeKind.REJECTED,
                    subscriber_hash(member.email),
                    reason_code="previous_member_missing",
                    message="the member at the previous address is no longer on the audience",
                )
            else:
                outcomes[op.key] = self._failed(op, result)
        return outcomes

    async def read_members(
        self, list_id: str, emails: Sequence[tuple[str, str]]
    ) -> dict[str, MemberSnapshot | None]:
        _unique_keys(key for key, _ in emails)
        ops = [
            Operation(
                key, "GET", f"/lists/{list_id}/members/{subscriber_hash(email)}", None, (email,)
            )
            for key, email in emails
        ]
        results = await self._session.run(ops, list_id)
        found: dict[str, MemberSnapshot | None] = {}
        for op in ops:
            result = results[op.key]
            if result.status is not None and 200 <= result.status < 300:
                found[op.key] = snapshot_from(result.body or {})
            elif result.status == 404:
                found[op.key] = None
            else:
                failed = self._failed(op, result)
                raise ProviderError(
                    f"could not read a member's status from Mailchimp: {failed.message}"
                )
        return found

    async def update_tags(self, list_id: str, changes: Sequence[TagChange]) -> list[Outcome]:
        _unique_keys(c.key for c in changes)
        ops: list[Operation] = []
        outcomes: dict[str, Outcome] = {}
        for change in changes:
            digest = subscriber_hash(change.email)
            tags = [{"name": t, "status": "active"} for t in change.add]
            tags += [{"name": t, "status": "inactive"} for t in change.remove]
            if not tags:
                outcomes[change.key] = Outcome(change.key, OutcomeKind.UNCHANGED, digest)
                continue
            if any(_unsendable(t["name"]) for t in tags) or _unsendable(change.email):
                outcomes[change.key] = Outcome(
                    change.key,
                    OutcomeKind.REJECTED,
                    digest,
                    reason_code="invalid_text",
                    message="a tag name or the address is not valid UTF-8; fix it in the source",
                )
                continue
            path = f"/lists/{list_id}/members/{digest}/tags"
            body = {"tags": tags, "is_syncing": True}
            ops.append(Operation(change.key, "POST", path, body, (change.email,)))
        results = await self._session.run(ops, list_id)
        for op in ops:
            result = results[op.key]
            digest = op.path.rsplit("/", 2)[-2]
            if result.status is not None and 200 <= result.status < 300:
                outcomes[op.key] = Outcome(op.key, OutcomeKind.UPDATED, digest)
            else:
                outcomes[op.key] = self._failed(op, result)
        return [outcomes[c.key] for c in changes]

    async def archive_members(
        self, list_id: str, emails: Sequence[tuple[str, str]]
    ) -> list[Outcome]:
        _unique_keys(key for key, _ in emails)
        ops = [
            Operation(
                key, "DELETE", f"/lists/{list_id}/members/{subscriber_hash(email)}", None, (email,)
            )
            for key, email in emails
        ]
        results = await self._session.run(ops, list_id)
        outcomes: list[Outcome] = []
        for op in ops:
            result = results[op.key]
            digest = op.path.rsplit("/", 1)[-1]
            if result.status is not None and 200 <= result.status < 300:
                outcomes.append(
                    Outcome(op.key, OutcomeKind.ARCHIVED, digest, MemberStatus.ARCHIVED)
                )
            elif result.status in (404, 405):
                # Not on the audience, already archived, or in a state Mailchimp will not archive
                # (bounced/pending): nothing changed, nothing to retry.
                found = classify_op(result, op.emails)
                outcomes.append(
                    Outcome(
                        op.key,
                        OutcomeKind.UNCHANGED,
                        digest,
                        reason_code=found.reason_code,
                        message=found.message,
                    )
                )
            else:
                outcomes.append(self._failed(op, result))
        return outcomes

    def _failed(self, op: Operation, result: OpResult) -> Outcome:
        """The outcome of a member operation that did not succeed (or raise if fatal)."""
        digest = op.path.split("/members/", 1)[-1].split("/", 1)[0]
        if result.status is None:
            return Outcome(
                op.key,
                OutcomeKind.RETRY,
                digest,
                reason_code="no_result",
                message="Mailchimp returned no result for this operation; it will be sent again",
            )
        found = classify_op(result, op.emails)
        if found.kind is ErrorKind.AUTH:
            raise self._session.auth_error(found.message)
        if found.kind is ErrorKind.FATAL:
            raise ProviderError(
                f"Mailchimp refused {op.method} on a member: {found.message}",
                status=result.status,
                title=result.problem.title if result.problem else "",
                detail=scrub(result.problem.detail, *op.emails) if result.problem else "",
            )
        return outcome_from_error(op.key, digest, found)

    # --- privacy (erasure and access requests: _mailchimp_privacy) ---------------------------

    async def contact_count(self, list_id: str) -> int | None:
        data = await self._session.get_json(
            f"/lists/{list_id}", {"fields": "stats.total_contacts"}, list_id=list_id
        )
        stats = data.get("stats")
        total = stats.get("total_contacts") if isinstance(stats, dict) else None
        return total if isinstance(total, int) else None

    async def delete_member_permanently(self, list_id: str, member: MemberRef) -> str:
        """Erase a member for good (GDPR); ``deleted`` or ``not_found``."""
        return await delete_permanently(self._session, list_id, _member_id(member))

    async def member_export(self, list_id: str, member: MemberRef) -> dict[str, Any] | None:
        """The member record, tags, activity and notes; ``None`` if there is no such member."""
        return await member_export(self._session, list_id, _member_id(member))

    # --- reading ----------------------------------------------------------------------------

    async def members_changed_since(
        self, list_id: str, since: datetime | None
    ) -> AsyncIterator[MemberSnapshot]:
        # One pager per status, all at once (each keeps its own order; callers need no other).
        pagers = [self._members_of_status(list_id, status, since) for status in MEMBER_STATUSES]
        async for snapshot in merge_streams(pagers):
            yield snapshot

    async def _members_of_status(
        self, list_id: str, status: str, since: datetime | None
    ) -> AsyncIterator[MemberSnapshot]:
        """Page one status, oldest change first, overlapping pages by one member to notice
        members that moved while paging (a shift), restarting from the last change seen."""
        path = f"/lists/{list_id}/members"
        cursor = since
        consumed = 0
        last: MemberSnapshot | None = None
        restarts = 0
        while True:
            overlap = last is not None and restarts <= 3
            params: dict[str, str | int] = {
                "status": status,
                "sort_field": "last_changed",
                "sort_dir": "ASC",
                "fields": MEMBER_FIELDS,
                "count": self.page_size,
                "offset": consumed - 1 if overlap else consumed,
            }
            if cursor is not None:
                params["since_last_changed"] = since_param(cursor)
            data = await self._session.get_json(path, params, list_id=list_id)
            items = list(data.get("members") or ())
            if overlap and last is not None:
                if not items or _email_of(items[0]) != last.email.strip().lower():
                    restarts += 1
                    cursor = last.last_changed or cursor
                    consumed, last = 0, None
                    continue
                items = items[1:]
            for item in items:
                snapshot = snapshot_from(item)
                if snapshot is not None:
                    last = snapshot
                    yield snapshot
            consumed += len(items)
            total = data.get("total_items")
            if not items or (isinstance(total, int) and consumed >= total):
                return

    async def campaigns(self, since: datetime | None) -> AsyncIterator[Campaign]:
        params: dict[str, str | int] = {
            "fields": CAMPAIGN_FIELDS,
            "sort_field": "create_time",
            "sort_dir": "ASC",
        }
        if since is None:
            async for item in self._session.pages("/campaigns", "campaigns", params):
                yield campaign_from(item)
            return
        seen: set[str] = set()
        # /campaigns has no "changed since": union of created since and sent since.
        for window in ("since_create_time", "since_send_time"):
            async for item in self._session.pages(
                "/campaigns", "campaigns", {**params, window: since_param(since)}
            ):
                campaign = campaign_from(item)
                if campaign.id not in seen:
                    seen.add(campaign.id)
                    yield campaign

    async def campaign_report(self, campaign_id: str) -> CampaignReport:
        data = await self._session.get_json(
            f"/reports/{campaign_id}",
            {
                "fields": "id,emails_sent,abuse_reports,unsubscribed,bounces,opens.opens_total,"
                "opens.unique_opens,opens.last_open,clicks.clicks_total,clicks.unique_clicks,"
                "clicks.last_click"
            },
        )
        return report_from(data)

    async def email_activity(
        self, campaign_id: str, since: datetime | None, *, include_sent: bool = False
    ) -> AsyncIterator[ActivityEvent]:
        """Opens, clicks and bounces (``email-activity``), then unsubscribes (``unsubscribed``),
        then — if asked — one ``sent`` per recipient (``sent-to``, stamped with the send time).
        Events at exactly ``since`` may come again: callers dedupe on the event's fields."""
        params: dict[str, str | int] = {"fields": ACTIVITY_FIELDS}
        if since is not None:
            params["since"] = since_param(since)
        base = f"/reports/{campaign_id}"
        async for entry in self._session.pages(f"{base}/email-activity", "emails", params):
            for event in activity_events(campaign_id, entry, since):
                yield event
        unsubscribed = {"fields": UNSUBSCRIBED_FIELDS}
        async for item in self._session.pages(f"{base}/unsubscribed", "unsubscribes", unsubscribed):
            when = parse_time(item.get("timestamp"))
            if when is None or (since is not None and when < since):
                continue
            yield ActivityEvent(
                campaign_id=campaign_id,
                email=str(item.get("email_address") or ""),
                action="unsubscribe",
                occurred_at=when,
                reason=str(item.get("reason") or "") or None,
            )
        if not include_sent:
            return
        campaign = await self._session.get_json(
            f"/campaigns/{campaign_id}", {"fields": "id,send_time"}
        )
        sent_at = parse_time(campaign.get("send_time"))
        if sent_at is None or (since is not None and sent_at < since):
            return
        fields = "sent_to.email_address,sent_to.status,total_items"
        async for item in self._session.pages(f"{base}/sent-to", "sent_to", {"fields": fields}):
            email = str(item.get("email_address") or "")
            yield activity_event(campaign_id, email, "sent", sent_at, None, None, None)

    # --- webhooks ---------------------------------------------------------------------------

    async def webhook_urls(self, list_id: str) -> list[str]:
        """The URLs registered as webhooks on the audience."""
        path = f"/lists/{list_id}/webhooks"
        return [str(hook.get("url", "")) async for hook in self._session.pages(path, "webhooks")]

    async def register_webhook(self, list_id: str, url: str) -> str:
        """Register ``url`` for all six list events; idempotent for an already registered URL."""
        path = f"/lists/{list_id}/webhooks"
        async for hook in self._session.pages(path, "webhooks"):
            if hook.get("url") == url:
                return str(hook.get("id"))
        body = {
            "url": url,
            "events": dict.fromkeys(WEBHOOK_EVENTS, True),
            "sources": {source: source in self.webhook_sources for source in WEBHOOK_SOURCES},
        }
        response = await self._session.http.request("POST", path, json=body)
        if response.status_code < 300:
            created = decode_json(response)
            return str(created.get("id") if isinstance(created, Mapping) else "")
        problem = parse_problem(
            response.status_code, response.content, response.headers.get("content-type", "")
        )
        if response.status_code == 400:
            raise ProviderError(
                "Mailchimp would not register the webhook URL "
                f"({scrub(problem.title + ': ' + problem.detail)}). Mailchimp checks the URL "
                "with a GET when it is registered: it must be public (not localhost), answer "
                "2xx, and not be registered twice; check server.public_url.",
                status=400,
                title=problem.title,
                detail=problem.detail,
            )
        raise self._session.error(response, "POST", path, list_id=list_id)

    async def doctor_checks(
        self, audience: Audience, *, double_opt_in: bool
    ) -> list[DoctorFinding]:
        """Mailchimp's own rule: webhooks from the ``api`` source echo the bridge's writes."""
        if "api" in self.webhook_sources:
            return [
                DoctorFinding(
                    "event sources",
                    "warn",
                    "webhook_sources includes 'api': every change the bridge makes comes back "
                    "as a webhook and is applied a second time",
                    "leave destination.webhook_sources at user and admin unless another tool "
                    "writes to this audience through the API",
                )
            ]
        return [DoctorFinding("event sources", "ok", ", ".join(self.webhook_sources))]

    async def aclose(self) -> None:
        await self._http.aclose()


def _unique_keys(keys: Iterable[str]) -> None:
    """Outcomes are matched to inputs by key, so one call must not repeat a key."""
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice in one call; keys must be unique")
        seen.add(key)


def _unsendable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_MEMBER_FIELD = re.compile(r"^members\.item:(\d+)\.(.+)$")


def _members_named(problem: Problem, count: int) -> dict[int, tuple[str, str]]:
    """Positions of the members a schema error names, with the field and Mailchimp's message;
    empty unless every error names a member of this call."""
    named: dict[int, tuple[str, str]] = {}
    for field, message in problem.errors:
        match = _MEMBER_FIELD.match(field)
        if match is None or int(match.group(1)) >= count:
            return {}
        named.setdefault(int(match.group(1)), (match.group(2), message))
    return named


def _member_id(member: MemberRef) -> str:
    """The member's path segment: the subscriber hash of its address. The stored id
    (``contact_id``) is not used: the permanent delete takes only the hash (the API reference
    says so for that path). Mailchimp's subscriber hash is the md5 of the lowercased address,
    so the bridge's own key names the same member when the address is not known (a fact of
    Mailchimp, known only here)."""
    return subscriber_hash(member.email) if member.email else member.email_hash


def _email_of(item: Mapping[str, Any]) -> str:
    return str(item.get("email_address") or "").strip().lower()
