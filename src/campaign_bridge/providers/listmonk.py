"""The listmonk adapter (self-hosted; API of v4.0 to v6.2).

One sync fills one listmonk list. How a batch of members is written (docs/providers.md):

- members the caller believes new (``exists=False``), at least ``import_threshold`` of a
  status the importer can give, are imported straight away (CSV upload, subscription status
  given, nothing existing overwritten) and the subscribers the upload created read back by id;
  any the upload did not create as sent (the hint was wrong) go on as below;
- the other addresses are looked up in a few queries (``subscribers.email IN (…)``);
- addresses listmonk does not have are created: through the importer when there are at least
  ``import_threshold`` of them and they need no opt-in e-mail, else one
  ``POST /api/subscribers`` each, in parallel;
- existing subscribers get a ``PATCH`` when their name or attributes changed, and their
  subscription on the list changes only when the caller approved an explicit status change,
  through the bulk ``PUT /api/subscribers/lists`` (one call per action for the whole batch).
  A blocklisted subscriber's subscriptions are never touched: listmonk would let a list
  ``add`` confirm them, and the bridge never lifts a blocklist.

listmonk has no outbound webhooks: unsubscribes, blocklists and bounces reach the bridge by
pull (``members_changed_since``), see docs/pull.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

import httpx
import orjson
from pydantic import SecretStr

from campaign_bridge.errors import BridgeError, ProviderAuthError, ProviderError, RetriableError
from campaign_bridge.providers._http import (
    ApiClient,
    HttpBacked,
    RetryPolicy,
    gather_all,
    json_default,
    latest,
)
from campaign_bridge.providers._listmonk_listing import Made
from campaign_bridge.providers._listmonk_session import ListmonkSession, listmonk_retriable
from campaign_bridge.providers._listmonk_wire import (
    Existing,
    auth_header,
    campaign_from,
    email_query,
    existing_from,
    list_state,
    member_key,
    normalize_email,
    parse_time,
    report_from,
    snapshot_from,
    sql_time,
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
    MergeFieldSpec,
    Outcome,
    OutcomeKind,
    Removal,
    TagChange,
)

__all__ = ["ListmonkProvider", "ListmonkSettings"]

logger = logging.getLogger(__name__)

NAME_FIELD = "name"  # the subscriber's name; every other mapped field goes into ``attribs``
#: a refresh since a moment reads this many read-back pages a request
CHANGES_PAGES = 10
# What a status the bridge asks for becomes on the list (PENDING: unconfirmed + opt-in e-mail)
_SUBSCRIPTION = {
    MemberStatus.SUBSCRIBED: "confirmed",
    MemberStatus.PENDING: "unconfirmed",
    MemberStatus.UNSUBSCRIBED: "unsubscribed",
}


_ADD_UNSUBSCRIBED = "add-unsubscribed"  # an unsubscribed subscription on a list it was not on

CAPABILITIES = Capabilities(
    max_batch=1000,  # addresses looked up and written per batch (no API limit; self-hosted)
    max_connections=32,  # no limit in listmonk itself; the concurrency setting's ceiling
    tags=False,
    interests=False,
    marketing_permissions=False,
    double_opt_in=True,  # an unconfirmed subscription on a double opt-in list gets the e-mail
    language=False,
    rename=True,  # PATCH of the subscriber at the previous address (status kept)
    removal=Removal.UNLIST,
    webhooks=False,  # upstream listmonk calls no one about subscriber changes: pull reads them
    webhook_member_events=False,
    # bounces only: views and clicks are counted per campaign, not listed per subscriber
    campaign_activity=False,
)


class ListmonkSettings(Protocol):
    """The destination settings the adapter reads (``ListmonkDestination``)."""

    base_url: str | None
    list_id: str
    concurrency: int
    timeout_seconds: float
    max_retries: int


class ListmonkProvider(HttpBacked):
    """listmonk behind the provider contract (``campaign_bridge.providers.base.Provider``)."""

    name = "listmonk"
    capabilities = CAPABILITIES

    def __init__(
        self,
        destination: ListmonkSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        import_threshold: int = 200,
        page_size: int = 1000,
        changes_page_size: int | None = None,
        attributes: Sequence[str] = (),
        import_poll: float = 0.01,
        import_timeout: float = 3600.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not destination.base_url:
            raise ValueError("listmonk needs destination.base_url (the root URL of your listmonk)")
        self.base_url = destination.base_url.rstrip("/")
        self.list_id = destination.list_id
        self.import_threshold = import_threshold
        #: page size of a refresh since a moment (default ten read-back pages): listmonk runs
        #: that query as a scan of the whole list, twice a page (docs/providers.md)
        self.changes_page_size = changes_page_size or CHANGES_PAGES * page_size
        self.attributes = tuple(attributes)
        user, secret, scheme = _credentials(destination)
        self._http = ApiClient.for_destination(
            destination,
            base_url=self.base_url,
            api_key=f"{user}:{secret}",
            headers={"Authorization": auth_header(user, secret, scheme)},
            provider=self.name,
            retry=retry,
            retriable=listmonk_retriable,
            transport=transport,
            sleep=sleep,
        )
        self._session = ListmonkSession(
            self._http,
            page_size=page_size,
            import_poll=import_poll,
            import_timeout=import_timeout,
            sleep=sleep,
        )
        self.user = user
        self._optin: dict[int, bool] = {}

    def server_time(self) -> datetime | None:
        """listmonk's clock now, to the second (the ``Date`` header), or, when later, the
        newest change time (its database's clock, to the microsecond) a subscriber this adapter
        created carries: a push's next refresh of changes starts there, so it does not read
        back the last second of the push's own writes."""
        return latest(self._http.server_time(), self._session.newest_write)

    # --- account ----------------------------------------------------------------------------

    async def check(self) -> dict[str, object]:
        """Credentials, the list, and the permissions a sync needs beyond reading lists: SQL
        queries (every lookup by address) and the importer; a missing one is a
        ``ProviderAuthError`` naming it, before any run depends on it."""
        await self._session.call("GET", "/health")
        lst = await self._list(self.list_id)
        await self._session.lookup(
            ["permission-check@campaign-bridge.invalid"], _int_id(self.list_id)
        )
        await self._session.call("GET", "/import/subscribers")
        return {
            "provider": self.name,
            "api_base_url": self.base_url,
            "api_user": self.user,
            "list_id": self.list_id,
            "list_name": lst.get("name"),
            "list_optin": lst.get("optin"),
            "subscriber_count": lst.get("subscriber_count"),
        }

    async def _list(self, list_id: str) -> dict[str, Any]:
        try:
            data = await self._session.call("GET", f"/lists/{_int_id(list_id)}")
        except ProviderError as exc:
            if exc.status == 400:
                raise ProviderError(
                    f"listmonk has no list {list_id} ({exc.detail}); set destination.list_id to "
                    "the id shown in listmonk's admin UI (Lists)",
                    status=400,
                    detail=exc.detail,
                ) from exc
            raise
        return dict(data or {})

    async def audience(self, list_id: str) -> Audience:
        """The list; its fields are the subscriber's ``name`` and free-form ``attribs`` (any
        other mapped field name becomes an attribute key, its value sent as the source has it)."""
        lst = await self._list(list_id)
        extra = [MergeFieldSpec(k, k, "text") for k in self.attributes if k != NAME_FIELD]
        fields = (MergeFieldSpec(NAME_FIELD, "Name", "text"), *extra)
        return Audience(
            id=str(lst.get("id")),
            name=str(lst.get("name") or ""),
            merge_fields=fields,
            double_opt_in=lst.get("optin") == "double",
            free_form_fields=True,
        )

    async def contact_count(self, list_id: str) -> int | None:
        count = (await self._list(list_id)).get("subscriber_count")
        return count if isinstance(count, int) else None

    # --- members ----------------------------------------------------------------------------

    async def upsert_members(self, list_id: str, members: Sequence[MemberUpsert]) -> list[Outcome]:
        _unique_keys(m.key for m in members)
        target = _int_id(list_id)
        outcomes: dict[str, Outcome] = {}
        accepted: dict[str, MemberUpsert] = {}  # normalised address -> member
        for member in members:
            email = normalize_email(member.email)
            refusal = _refusal(member, email, accepted)
            if refusal is not None:
                outcomes[member.key] = refusal
                continue
            assert email is not None
            accepted[email] = member
        renames: dict[str, MemberUpsert] = {}
        plain: dict[str, MemberUpsert] = {}
        for email, member in accepted.items():
            (plain if member.previous_email is None else renames)[email] = member
        outcomes.update(await self._rename(target, renames))
        if plain:
            created, plain = await self._import_new(target, plain)
            outcomes.update(created)
        found = await self._session.lookup(list(plain), target)
        new = {e: m for e, m in plain.items() if e not in found}
        double = await self._double_opt_in(target)
        created, existing = await gather_all(
            [self._create(target, new, double), self._update(target, plain, found, double)]
        )
        outcomes.update(existing)
        # created meanwhile (by an earlier attempt of ours that timed out, or by someone else):
        # looked up again and treated as existing
        taken = [e for e, m in new.items() if created[m.key].reason_code == "member_exists"]
        if taken:
            again = await self._session.lookup(taken, target)
            created.update(await self._update(target, plain, again, double))
        outcomes.update(created)
        return [outcomes[m.key] for m in members]

    async def _import_new(
        self, list_id: int, members: dict[str, MemberUpsert]
    ) -> tuple[dict[str, Outcome], dict[str, MemberUpsert]]:
        """Members the caller believes new (``exists=False``), at least ``import_threshold`` of
        one status the importer can give: imported without a lookup first, and the subscribers
        the upload created read back by id. A member counts as created when listmonk holds
        what the import sent (name, attributes, subscription, not blocklisted); any other (the
        hint was wrong, or listmonk skipped the row) is returned, for the lookup path, with
        the import having changed nothing of it but adding it to the list when it was not on
        it (``overwrite`` off), as that path would. Returns (outcomes, the members left)."""
        groups: dict[MemberStatus, dict[str, MemberUpsert]] = defaultdict(dict)
        for email, member in members.items():
            if _importable_new(member):
                groups[member.status_if_new][email] = member
        chosen = {s: g for s, g in groups.items() if len(g) >= self.import_threshold > 0}
        if not chosen:
            return {}, members
        done: dict[str, Outcome] = {}
        taken: set[str] = set()
        for status, group in chosen.items():
            wanted = _SUBSCRIPTION[status]
            rows = [(e, *_profile(m)) for e, m in group.items()]
            result = await self._session.import_rows(list_id, wanted, rows, read_back=True)
            for email, name, attribs in rows:
                made = result.created.get(email)
                if made is not None and _made_by_import(made, name, attribs, wanted):
                    member = group[email]
                    done[member.key] = Outcome(
                        member.key, OutcomeKind.CREATED, member_key(made.id), status
                    )
                    taken.add(email)
        return done, {e: m for e, m in members.items() if e not in taken}

    async def _double_opt_in(self, list_id: int) -> bool:
        """Whether the list is double opt-in (read once per list for this adapter's life)."""
        if list_id not in self._optin:
            self._optin[list_id] = (await self._list(str(list_id))).get("optin") == "double"
        return self._optin[list_id]

    async def _create(
        self, list_id: int, new: dict[str, MemberUpsert], double: bool
    ) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        by_status: dict[MemberStatus, dict[str, MemberUpsert]] = defaultdict(dict)
        for email, member in new.items():
            status = member.status_if_new
            if status is MemberStatus.PENDING and not double:
                outcomes[member.key] = _single_opt_in_refusal(member)
            elif status not in _SUBSCRIPTION:
                outcomes[member.key] = _unsupported(member, status)
            else:
                by_status[status][email] = member
        for status, group in by_status.items():
            if len(group) >= self.import_threshold > 0 and status is not MemberStatus.PENDING:
                outcomes.update(await self._import(list_id, status, group))
            else:
                outcomes.update(await self._post_each(list_id, status, group))
        return outcomes

    async def _import(
        self, list_id: int, status: MemberStatus, group: dict[str, MemberUpsert]
    ) -> dict[str, Outcome]:
        rows = [(e, *_profile(m)) for e, m in group.items()]
        wanted = _SUBSCRIPTION[status]
        imported = await self._session.import_rows(list_id, wanted, rows, read_back=True)
        outcomes: dict[str, Outcome] = {}
        left: dict[str, MemberUpsert] = {}
        for email, member in group.items():
            made = imported.created.get(email)
            # every row new (looked up just before) and applied: created as asked, with its id
            if imported.complete and made is not None:
                outcomes[member.key] = Outcome(
                    member.key, OutcomeKind.CREATED, member_key(made.id), status
                )
            else:
                left[email] = member
        if not left:
            return outcomes
        # listmonk skipped rows it found invalid: read back what the import did.
        found = await self._session.lookup(list(left), list_id)
        for email, member in left.items():
            item = found.get(email)
            if item is None:
                outcomes[member.key] = _retry(member, "the import did not create this subscriber")
            else:
                outcomes[member.key] = _outcome(member, OutcomeKind.CREATED, item)
        return outcomes

    async def _post_each(
        self, list_id: int, status: MemberStatus, group: dict[str, MemberUpsert]
    ) -> dict[str, Outcome]:
        async def one(email: str, member: MemberUpsert) -> tuple[str, Outcome]:
            name, attribs = _profile(member)
            body: dict[str, Any] = {
                "email": email,
                "name": name,
                "status": "enabled",
                "attribs": attribs,
                # unsubscribed: created off every list first, then added as unsubscribed below,
                # so no campaign can reach the subscriber in between
                "lists": [] if status is MemberStatus.UNSUBSCRIBED else [list_id],
                "preconfirm_subscriptions": status is MemberStatus.SUBSCRIBED,
            }
            try:
                data = await self._session.call("POST", "/subscribers", json=body)
            except ProviderError as exc:
                return member.key, _post_failure(member, exc)
            item = existing_from(data, list_id)
            self._session.saw_write(item.changed)
            if status is MemberStatus.UNSUBSCRIBED:
                try:
                    await self._lists_action([item.id], list_id, "add", "unsubscribed")
                except ProviderAuthError:
                    raise
                except (ProviderError, RetriableError) as exc:
                    # created, on no list (read back as archived): the next run adds it
                    return member.key, _off_list(_outcome(member, OutcomeKind.CREATED, item), exc)
                item = _with_subscription(item, "unsubscribed")
            return member.key, _outcome(member, OutcomeKind.CREATED, item)

        return dict(await gather_all([one(e, m) for e, m in group.items()]))

    async def _update(
        self,
        list_id: int,
        members: dict[str, MemberUpsert],
        found: dict[str, Existing],
        double: bool,
    ) -> dict[str, Outcome]:
        """Existing subscribers: profile changes (PATCH each), then subscription changes in one
        bulk call per action."""
        outcomes: dict[str, Outcome] = {}
        plans: dict[str, tuple[MemberUpsert, Existing, str | None]] = {}
        for email, item in found.items():
            member = members[email]
            change = _subscription_change(member, item, double)
            if isinstance(change, Outcome):
                outcomes[member.key] = change
                continue
            plans[email] = (member, item, change)
        await self._patch_profiles(list_id, [(m, i) for m, i, _ in plans.values()])
        bounced = await self._bounced([i for _, i, _ in plans.values() if i.blocklisted])
        groups: dict[str, list[int]] = defaultdict(list)
        for _member, item, change in plans.values():
            if change is not None:
                # listmonk's "unsubscribe" changes only subscriptions that exist: one not on the
                # list is added to it as unsubscribed
                off_list = change == "unsubscribed" and item.subscription is None
                groups[_ADD_UNSUBSCRIBED if off_list else change].append(item.id)
        unsent: dict[int, BridgeError] = {}
        for failed in await gather_all(
            [self._apply_change(list_id, c, ids) for c, ids in groups.items()]
        ):
            unsent.update(failed)
        # an earlier re-confirmation whose opt-in e-mail failed: asked again while still due
        again = [
            item.id
            for member, item, change in plans.values()
            if change is None and member.finish_follow_up and _confirmation_due(item, double)
        ]
        unsent.update(await self._send_optins(again))
        for member, item, change in plans.values():
            after = _with_subscription(item, change, double) if change is not None else item
            bounce = item.id in bounced
            outcome = _outcome(member, OutcomeKind.UPDATED, after, bounced=bounce)
            failure = unsent.get(item.id)
            outcomes[member.key] = outcome if failure is None else _optin_unsent(outcome, failure)
        return outcomes

    async def _patch_profiles(
        self, list_id: int, pairs: Sequence[tuple[MemberUpsert, Existing]]
    ) -> None:
        """Write name/attribs where they differ; attribs merge at the top level, so keys other
        tools set stay. Many at once (subscribers already on the list) go through the importer
        (``overwrite_userinfo``, subscription statuses never overwritten), and whatever it did
        not change (listmonk before 6.2 ignores that option) gets a PATCH each."""
        changes = [c for m, i in pairs if (c := _profile_change(m, i)) is not None]
        on_list = [c for c in changes if c[0].subscription is not None]
        if len(on_list) >= self.import_threshold > 0:
            rows = [(item.email, name, attribs) for item, name, attribs in on_list]
            await self._session.import_rows(list_id, "unconfirmed", rows, profiles=True)
            landed = await self._session.lookup([item.email for item, _, _ in on_list], list_id)
            done = {
                item.email
                for item, name, attribs in on_list
                if (now := landed.get(item.email)) is not None
                and now.name == name
                and now.attribs == attribs
            }
            changes = [c for c in changes if c[0].email not in done]

        async def one(item: Existing, name: str, attribs: dict[str, object]) -> None:
            changed = {k: v for k, v in attribs.items() if item.attribs.get(k) != v}
            body = {"email": item.email, "name": name, "attribs": changed}
            await self._session.call("PATCH", f"/subscribers/{item.id}", json=body)

        await gather_all([one(*c) for c in changes])

    async def _apply_change(
        self, list_id: int, change: str, ids: list[int]
    ) -> dict[int, BridgeError]:
        """Set the subscription of ``ids`` to ``change``; the opt-in e-mails that could not be
        asked for, by subscriber id (the change itself stands)."""
        if change == "unsubscribed":
            await self._lists_action(ids, list_id, "unsubscribe")
            return {}
        if change == _ADD_UNSUBSCRIBED:
            await self._lists_action(ids, list_id, "add", "unsubscribed")
            return {}
        await self._lists_action(ids, list_id, "add", change)
        if change == "unconfirmed":  # re-confirmation: listmonk's opt-in e-mail
            return await self._send_optins(ids)
        return {}

    async def _send_optins(self, ids: Sequence[int]) -> dict[int, BridgeError]:
        """Ask listmonk for each subscriber's opt-in e-mail (``POST /subscribers/{id}/optin``);
        the calls that failed (after the client's retries), by id. A refused key is not one
        member's failure: it stops the run."""

        async def one(subscriber: int) -> tuple[int, BridgeError | None]:
            try:
                await self._session.call("POST", f"/subscribers/{subscriber}/optin", json={})
            except ProviderAuthError:
                raise
            except (ProviderError, RetriableError) as exc:
                return subscriber, exc
            return subscriber, None

        results = await gather_all([one(i) for i in ids])
        return {i: exc for i, exc in results if exc is not None}

    async def _lists_action(
        self, ids: list[int], list_id: int, action: str, status: str | None = None
    ) -> None:
        for start in range(0, len(ids), 1000):
            body: dict[str, Any] = {
                "ids": ids[start : start + 1000],
                "action": action,
                "target_list_ids": [list_id],
            }
            if status is not None:
                body["status"] = status
            await self._session.call("PUT", "/subscribers/lists", json=body)

    async def _rename(self, list_id: int, renames: dict[str, MemberUpsert]) -> dict[str, Outcome]:
        """An address change: PATCH the subscriber at the previous address (status kept)."""
        if not renames:
            return {}
        olds = {normalize_email(m.previous_email or "") or "": e for e, m in renames.items()}
        found = await self._session.lookup([o for o in olds if o] + list(renames), list_id)
        outcomes: dict[str, Outcome] = {}
        renamed: dict[str, Existing] = {}
        for old, new in olds.items():
            member = renames[new]
            item = found.get(old)
            if item is None or new in found:
                code = "previous_member_missing" if item is None else "email_taken"
                text = (
                    "the subscriber at the previous address is no longer in listmonk"
                    if item is None
                    else "another subscriber already has the new address"
                )
                outcomes[member.key] = _rejected(member, code, text)
                continue
            name, attribs = _profile(member)
            body = {"email": new, "name": name or item.name, "attribs": attribs}
            data = await self._session.call("PATCH", f"/subscribers/{item.id}", json=body)
            renamed[new] = existing_from(data, list_id)
            outcomes[member.key] = _outcome(member, OutcomeKind.UPDATED, renamed[new])
        # an approved status change that came with the new address: as for any member
        changing = {e: renames[e] for e in renamed if renames[e].status is not None}
        if changing:
            double = await self._double_opt_in(list_id)
            found_now = {e: renamed[e] for e in changing}
            outcomes.update(await self._update(list_id, changing, found_now, double))
        return outcomes

    async def read_members(
        self, list_id: str, emails: Sequence[tuple[str, str]]
    ) -> dict[str, MemberSnapshot | None]:
        _unique_keys(key for key, _ in emails)
        target = _int_id(list_id)
        wanted = {key: normalize_email(email) for key, email in emails}
        found = await self._session.lookup([e for e in wanted.values() if e], target)
        bounced = await self._bounced([i for i in found.values() if i.blocklisted])
        return {
            key: snapshot_from(found[e], bounced=found[e].id in bounced)
            if e is not None and e in found
            else None
            for key, e in wanted.items()
        }

    async def _bounced(self, items: Iterable[Existing]) -> set[int]:
        """Which of these (blocklisted) subscribers listmonk recorded a bounce for."""
        ids = [i.id for i in items]
        flags = await gather_all([self._session.bounced(i) for i in ids])
        return {i for i, flag in zip(ids, flags, strict=True) if flag}

    async def update_tags(self, list_id: str, changes: Sequence[TagChange]) -> list[Outcome]:
        """listmonk subscribers have no tags (lists do): nothing to write."""
        _unique_keys(c.key for c in changes)
        return [
            Outcome(c.key, OutcomeKind.UNCHANGED)
            if not (c.add or c.remove)
            else _rejected_key(
                c.key,
                "unsupported",
                "listmonk subscribers have no tags; map them to an attribute instead",
            )
            for c in changes
        ]

    async def archive_members(
        self, list_id: str, emails: Sequence[tuple[str, str]]
    ) -> list[Outcome]:
        """Take members off the list (``remove``: the subscription row goes; the subscriber
        and their history stay in listmonk)."""
        _unique_keys(key for key, _ in emails)
        target = _int_id(list_id)
        wanted = {key: normalize_email(email) or "" for key, email in emails}
        found = await self._session.lookup([e for e in wanted.values() if e], target)
        on_list = [found[e].id for e in wanted.values() if e in found and found[e].subscription]
        if on_list:
            await self._lists_action(on_list, target, "remove")
        return [_archive_outcome(key, found.get(email)) for key, email in wanted.items()]

    # --- pull ---------------------------------------------------------------------------------

    async def members_changed_since(
        self, list_id: str, since: datetime | None
    ) -> AsyncIterator[MemberSnapshot]:
        """Members of the list whose record changed after ``since``: the subscriber row
        (``subscribers.updated_at``: profile, blocklist) or the subscription
        (``subscriber_lists.updated_at``: a list unsubscribe moves only that one).

        listmonk's PostgreSQL answers the query with ``since`` by a scan of the list (the
        sub-query under ``OR`` is a hashed sub-plan, and ``subscriber_lists.updated_at`` has no
        index), for the page and again for its ``COUNT``; so those pages are larger."""
        target = _int_id(list_id)
        size = self._session.page_size if since is None else self.changes_page_size
        query = ""
        if since is not None:
            moment = sql_time(since)
            query = (
                f"(subscribers.updated_at > {moment} OR subscribers.id IN (SELECT subscriber_id "
                f"FROM subscriber_lists WHERE list_id = {target} AND updated_at > {moment}))"
            )
        last = 0
        while True:
            where = f"subscribers.id > {last}" + (f" AND {query}" if query else "")
            params: list[tuple[str, str | int]] = [
                ("list_id", target),
                ("query", where),
                ("order_by", "id"),
                ("order", "asc"),
                ("page", 1),
                ("per_page", size),
            ]
            items = await self._session.subscribers(params, target)
            bounced = await self._bounced([i for i in items if i.blocklisted])
            for item in items:
                yield snapshot_from(item, bounced=item.id in bounced)
            if len(items) < size:
                return
            last = items[-1].id

    async def campaigns(self, since: datetime | None) -> AsyncIterator[Campaign]:
        """Campaigns created, started or updated after ``since`` (listmonk cannot filter by
        time, so all are listed, newest first, and filtering stops at older ones)."""
        params = [("order_by", "created_at"), ("order", "desc"), ("no_body", "true")]
        async for item in self._session.pages("/campaigns", params, page_size=100):
            stamps = [parse_time(item.get(f)) for f in ("created_at", "started_at", "updated_at")]
            if since is None or any(s is not None and s >= since for s in stamps):
                yield campaign_from(item)

    async def campaign_report(self, campaign_id: str) -> CampaignReport:
        cid = _int_id(campaign_id)
        item = await self._session.call("GET", f"/campaigns/{cid}", params={"no_body": "true"})
        counts: dict[str, int] = defaultdict(int)
        async for bounce in self._session.pages("/bounces", [("campaign_id", cid)]):
            counts[str(bounce.get("type"))] += 1
        return report_from(item or {}, counts)

    async def email_activity(
        self, campaign_id: str, since: datetime | None, *, include_sent: bool = False
    ) -> AsyncIterator[ActivityEvent]:
        """Per-contact events listmonk's API gives: bounces (``/api/bounces``). Views and clicks
        are counted per campaign (``campaign_report``); listmonk ties them to subscribers only
        with ``privacy.individual_tracking`` and then offers no per-campaign listing of them.
        There is no list of recipients either, so ``include_sent`` yields nothing more."""
        cid = _int_id(campaign_id)
        params: list[tuple[str, str | int]] = [
            ("campaign_id", cid),
            ("order_by", "created_at"),
            ("order", "asc"),
        ]
        async for bounce in self._session.pages("/bounces", params):
            when = parse_time(bounce.get("created_at"))
            if when is None or (since is not None and when < since):
                continue
            kind = str(bounce.get("type") or "")
            yield ActivityEvent(
                campaign_id=campaign_id,
                email=str(bounce.get("email") or ""),
                action="bounce",
                occurred_at=when,
                bounce_type="hard" if kind in ("hard", "complaint") else "soft",
                reason=f"{kind} bounce ({bounce.get('source') or 'listmonk'})",
            )

    # --- privacy --------------------------------------------------------------------------------

    async def delete_member_permanently(self, list_id: str, member: MemberRef) -> str:
        """Delete the subscriber (listmonk deletes for good; subscriptions and bounces go with
        it)."""
        item = await self._find(member)
        if item is None:
            return "not_found"
        await self._session.call("DELETE", f"/subscribers/{item['id']}")
        return "deleted"

    async def member_export(self, list_id: str, member: MemberRef) -> dict[str, object] | None:
        item = await self._find(member)
        if item is None:
            return None
        bounces = await self._session.call("GET", f"/subscribers/{item['id']}/bounces")
        return {"subscriber": item, "bounces": bounces or []}

    async def _find(self, member: MemberRef) -> dict[str, Any] | None:
        """The subscriber by its listmonk id when the bridge stored one, else by address, else
        by the bridge's key (listmonk's SQL filter can compute the same md5). A stored id that
        is not a number (the address's hash, which the adapter stored before it stored
        listmonk's id) names nothing here and is passed over."""
        if member.member_id and member.member_id.isdigit():
            found = await self._query(f"subscribers.id = {int(member.member_id)}")
            if found is not None:
                return found
        email = normalize_email(member.email) if member.email else None
        if email:
            return await self._query(email_query([email]))
        digest = member.email_hash
        if len(digest) != 32 or not all(ch in "0123456789abcdef" for ch in digest):
            raise ValueError("email_hash must be the md5 of the lower-cased address")
        return await self._query(f"md5(subscribers.email) = '{digest}'")

    async def _query(self, condition: str) -> dict[str, Any] | None:
        params = [("query", condition), ("per_page", "all")]
        data = await self._session.call("GET", "/subscribers", params=params) or {}
        results = data.get("results") or []
        return dict(results[0]) if results else None

    # --- webhooks: listmonk has none for subscriber events ---------------------------------------

    async def register_webhook(self, list_id: str, url: str) -> str:
        raise ProviderError(
            "listmonk has no outbound webhooks for subscriber events; its unsubscribes, "
            "blocklists and bounces reach the bridge by pull (run `campaign-bridge pull`, or "
            "schedule it). Remove server.public_url for this sync."
        )

    async def webhook_urls(self, list_id: str) -> list[str]:
        return []

    async def doctor_checks(
        self, audience: Audience, *, double_opt_in: bool
    ) -> list[DoctorFinding]:
        """listmonk's rules: lookups by address need ``subscribers:sql_query``; double opt-in
        needs a double opt-in list."""
        findings: list[DoctorFinding] = []
        try:
            await self._query("subscribers.id = 0")
        except ProviderError as exc:
            findings.append(
                DoctorFinding(
                    "SQL lookups",
                    "fail",
                    f"listmonk refused a subscriber query: {exc}",
                    f"give API user {self.user!r} a role with subscribers:sql_query (every "
                    "lookup by address is a query)",
                )
            )
        else:
            findings.append(DoctorFinding("SQL lookups", "ok", "subscriber queries allowed"))
        if double_opt_in and not audience.double_opt_in:
            findings.append(
                DoctorFinding(
                    "double opt-in",
                    "fail",
                    f"list {audience.id} is a single opt-in list: listmonk sends no "
                    "confirmation e-mail there",
                    "make the list double opt-in in listmonk (Lists → the list → Opt-in), or "
                    "turn double_opt_in off for this sync",
                )
            )
        return findings

    async def aclose(self) -> None:
        await self._http.aclose()


# --- decisions (pure) ---------------------------------------------------------------------------


def _credentials(destination: object) -> tuple[str, str, str]:
    """(user, secret, scheme): an API user's token, or HTTP Basic user and password."""
    token = getattr(destination, "api_token", None) or getattr(destination, "api_key", None)
    user = getattr(destination, "api_user", None)
    if token is not None and user:
        return str(user), _secret(token), "token"
    username = getattr(destination, "username", None)
    password = getattr(destination, "password", None)
    if username and password is not None:
        return str(username), _secret(password), "basic"
    raise ValueError("listmonk needs api_user with api_token, or username with password")


def _secret(value: object) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else str(value)


def _int_id(value: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ProviderError(f"listmonk ids are positive integers, not {value!r}")
    return int(text)


def _profile(member: MemberUpsert) -> tuple[str, dict[str, object]]:
    """(name, attribs): the name field, and every other non-empty field (one pass, no copy)."""
    fields = member.merge_fields
    name = fields.get(NAME_FIELD) or ""
    return str(name), {k: v for k, v in fields.items() if k != NAME_FIELD and v != ""}


def _importable_new(member: MemberUpsert) -> bool:
    """Believed new, and created by the importer as asked (no opt-in e-mail, no other status
    change approved than the one it is created with)."""
    return (
        member.exists is False
        and member.status_if_new in (MemberStatus.SUBSCRIBED, MemberStatus.UNSUBSCRIBED)
        and member.status in (None, member.status_if_new)
    )


def _made_by_import(made: Made, name: str, attribs: dict[str, object], status: str) -> bool:
    """Whether the subscriber read back holds what the import sent for it: not blocklisted,
    subscribed to the list with ``status``, the name (one left empty is derived by listmonk
    from the address) and the attributes (compared as JSON)."""
    if made.blocklisted or made.subscription != status or (name and made.name != name):
        return False
    held = made.attribs
    return held == attribs or held == orjson.loads(orjson.dumps(attribs, default=json_default))


def _profile_change(
    member: MemberUpsert, item: Existing
) -> tuple[Existing, str, dict[str, object]] | None:
    """(subscriber, name, all its attribs after the change) when the member's name or an
    attribute differs from what listmonk has, else ``None``."""
    name, attribs = _profile(member)
    changed = {k: v for k, v in attribs.items() if item.attribs.get(k) != v}
    if (not name or name == item.name) and not changed:
        return None
    return item, name or item.name, {**item.attribs, **changed}


def _subscription_change(
    member: MemberUpsert, item: Existing, double: bool
) -> str | Outcome | None:
    """The subscription status to set on the list for an existing subscriber (``None``:
    leave it), or the outcome when the bridge must not touch it."""
    if item.blocklisted:
        if member.status in (MemberStatus.SUBSCRIBED, MemberStatus.PENDING):
            return _rejected(
                member,
                "blocklisted",
                "listmonk has this subscriber blocklisted; the bridge never lifts a blocklist "
                "(only the person, or an admin in listmonk, can)",
                item,
            )
        return None
    wanted = member.status
    if wanted is None and item.subscription is None:
        wanted = member.status_if_new  # on listmonk, but not on this list: added as new
    if wanted is None:
        return None
    if wanted not in _SUBSCRIPTION:
        return _unsupported(member, wanted, item)
    if wanted is MemberStatus.SUBSCRIBED and item.subscription == "unsubscribed":
        # listmonk cannot tell who unsubscribed them: never lifted in place, the person is asked
        # to confirm instead (the opt-in e-mail), as for any re-consent
        wanted = MemberStatus.PENDING
    if wanted is MemberStatus.PENDING and not double:
        return _single_opt_in_refusal(member, item)
    target = _SUBSCRIPTION[wanted]
    return None if target == item.subscription else target


def _confirmation_due(item: Existing, double: bool) -> bool:
    """The subscriber still waits to confirm on the list (never one who unsubscribed, was
    blocklisted or confirmed meanwhile)."""
    return double and not item.blocklisted and item.subscription == "unconfirmed"


def _optin_unsent(outcome: Outcome, failure: BridgeError) -> Outcome:
    """The subscription change was made but its opt-in e-mail was not asked for: the change
    stands, the e-mail is asked for again by the next run."""
    message = f"set to unconfirmed, but listmonk's opt-in e-mail was not sent: {failure}"
    return outcome.with_failed_follow_up(failure, "optin_not_sent", message)


def _off_list(outcome: Outcome, failure: BridgeError) -> Outcome:
    """The subscriber was created off every list, but not added to the list as unsubscribed:
    it stays created, on no list (``archived``), and the next run adds it."""
    message = f"created, but not added to the list as unsubscribed: {failure}"
    return outcome.with_failed_follow_up(failure, "not_added_to_list", message)


def _with_subscription(item: Existing, status: str, double: bool = False) -> Existing:
    return dataclasses.replace(item, subscription=status, double_opt_in=double)


def _outcome(
    member: MemberUpsert, kind: OutcomeKind, item: Existing, *, bounced: bool = False
) -> Outcome:
    return Outcome(
        member.key,
        kind,
        member_key(item.id),
        list_state(item, bounced=bounced),
        last_changed=item.changed,
    )


def _archive_outcome(key: str, item: Existing | None) -> Outcome:
    """What ``archive_members`` did to one member, found (before the call) as ``item``."""
    if item is None:
        return Outcome(key, OutcomeKind.UNCHANGED, reason_code="resource_not_found")
    if item.subscription is None:
        code = "not_archivable"
        return Outcome(key, OutcomeKind.UNCHANGED, member_key(item.id), reason_code=code)
    return Outcome(key, OutcomeKind.ARCHIVED, member_key(item.id), MemberStatus.ARCHIVED)


def _refusal(
    member: MemberUpsert, email: str | None, accepted: dict[str, MemberUpsert]
) -> Outcome | None:
    if email is None:
        return _rejected(member, "invalid_email", "listmonk would refuse this address")
    bad = _unsendable_field(member.merge_fields)
    if bad is not None:
        return _rejected(
            member,
            "invalid_text",
            f"{bad} holds text that is not valid UTF-8 (undecodable bytes in the source); fix "
            "the value in the source",
        )
    if email in accepted:
        return _rejected(
            member,
            "duplicate_email",
            "another record in the same batch has this address (addresses are compared "
            "without case); keep one record per address",
        )
    return None


def _unsendable_field(fields: dict[str, object]) -> str | None:
    """The first field holding text that cannot be sent as UTF-8 (lone surrogates from
    undecodable source bytes); ASCII text, the usual case, is passed at once."""
    for name, value in fields.items():
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return name
    return None


def _rejected(
    member: MemberUpsert, code: str, message: str, item: Existing | None = None
) -> Outcome:
    return Outcome(
        member.key,
        OutcomeKind.REJECTED,
        member_key(item.id) if item is not None else None,
        list_state(item) if item is not None else None,
        reason_code=code,
        message=message,
    )


def _rejected_key(key: str, code: str, message: str) -> Outcome:
    return Outcome(key, OutcomeKind.REJECTED, reason_code=code, message=message)


def _unsupported(
    member: MemberUpsert, status: MemberStatus, item: Existing | None = None
) -> Outcome:
    return _rejected(
        member,
        "unsupported_status",
        f"listmonk has no {status} status for a list subscription; set the sync's "
        "unconsented_new to skip or unsubscribed",
        item,
    )


def _single_opt_in_refusal(member: MemberUpsert, item: Existing | None = None) -> Outcome:
    return _rejected(
        member,
        "single_opt_in_list",
        "confirmation asked for, but the listmonk list is single opt-in (no opt-in e-mail); "
        "make the list double opt-in in listmonk, or turn the sync's double_opt_in off",
        item,
    )


def _retry(member: MemberUpsert, message: str) -> Outcome:
    return Outcome(
        member.key,
        OutcomeKind.RETRY,
        reason_code="no_result",
        message=message + "; it will be sent again",
    )


def _post_failure(member: MemberUpsert, exc: ProviderError) -> Outcome:
    if exc.status == 409:  # exists since the lookup: the caller updates it instead
        return _rejected(member, "member_exists", "listmonk has this address already")
    if exc.status in (400, 500):  # 500: listmonk's database refused a value (not retriable)
        return _rejected(
            member, "invalid_member", f"listmonk refused this subscriber: {exc.detail}"
        )
    raise exc


def _unique_keys(keys: Iterable[str]) -> None:
    seen: set[str] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice in one call; keys must be unique")
        seen.add(key)
