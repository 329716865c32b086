"""The Brevo API v3 adapter (contacts by e-mail address, one list as the audience).

How members are written (docs/providers.md explains why):

- members not known to exist, to be created ``subscribed`` or ``unsubscribed``: one
  ``POST /contacts/import`` per call (``updateExistingContacts: false``, so an import never
  touches a contact that already exists, and never adds one back to the list); the created
  contacts (with their ids) are read back from ``GET /contacts?createdSince`` by one reader
  for every import in flight (``_brevo_readback``); an import with rows not read back is polled
  to the end, its rejected rows come from the process's report files; a contact that turned out
  to exist goes the next way:
- members the caller saw subscribed, whose attributes change (no status change, no rename):
  one ``POST /contacts/import`` per call with ``updateExistingContacts`` (``_brevo_updates``:
  the import adds every row to the list, so a member Brevo shows changed since the caller's
  status refresh goes the next way instead, as does one that turned out not to be there);
- everything else one contact at a time: ``GET /contacts/{email}`` (its status), then
  ``PUT`` with the attributes and only an approved status change. ``/contacts/batch`` is not
  used: Brevo deprecated it on 30 October 2026 in favour of the import.
- ``unsubscribed`` sets ``emailBlacklisted`` (Brevo's unsubscribe: no marketing e-mail from the
  account). The bridge never lifts a blocklist: a blocklisted contact asked back gets a double
  opt-in request (they confirm themselves) or is rejected with ``blocklisted``. Brevo keeps
  the contact blocklisted until they confirm, so the outcome says ``unsubscribed`` (the
  confirmation, when it comes, is Brevo's change, seen by pull or a webhook).
- ``pending`` is Brevo's double opt-in (``POST /contacts/doubleOptinConfirmation``), which
  needs a template id and a redirection URL; the contact is kept off the list, marked
  ``DOUBLE_OPT-IN`` = 2, until it confirms.
- archive = removal from the list (``/contacts/lists/{id}/contacts/remove``, 150 a call).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from campaign_bridge.errors import ProviderAuthError, ProviderError, RetriableError
from campaign_bridge.providers._brevo_errors import (
    brevo_retriable,
    brevo_retry_after,
    parse_problem,
    translate,
)
from campaign_bridge.providers._brevo_members import (
    attributes_of,
    awaiting_confirmation,
    bind,
    blocklisted,
    brevo_time,
    doi_missing,
    doi_unsent,
    importable,
    joins,
    list_number,
    made_by_import,
    precheck,
    record_error,
    unique_keys,
)
from campaign_bridge.providers._brevo_pace import KeyPacer
from campaign_bridge.providers._brevo_readback import ImportReader
from campaign_bridge.providers._brevo_session import BrevoSession, list_missing
from campaign_bridge.providers._brevo_updates import (
    ChangeWatch,
    bulk_update,
    import_rejections,
    import_updates,
)
from campaign_bridge.providers._brevo_wire import (
    DOI_ATTRIBUTE,
    activity_from_export,
    audience_from,
    campaign_from,
    exports_for,
    normal_email,
    parse_time,
    report_from,
    snapshot_from,
    status_of,
)
from campaign_bridge.providers._http import ApiClient, HttpBacked, RetryPolicy, latest
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
)

__all__ = ["CAPABILITIES", "DEFAULT_BASE_URL", "WEBHOOK_EVENTS", "BrevoProvider"]

DEFAULT_BASE_URL = "https://api.brevo.com/v3"
WEBHOOK_EVENTS = (
    "unsubscribed",
    "hardBounce",
    "softBounce",
    "spam",
    "opened",
    "click",
    "delivered",
    "listAddition",
    "contactUpdated",
    "contactDeleted",
)
IMPORT_MAX_ROWS = 2000  # rows an import carries (~300 KB); push slices by it, up to 1,000
LIST_BATCH = 150  # list add/remove: most contacts per call
PAGE_MAX = 1000  # GET /contacts: most contacts a page
COUNTERS_TRUSTED = 600.0  # seconds a campaign's counters decide which exports to ask for
S = MemberStatus
K = OutcomeKind
CAPABILITIES = Capabilities(
    max_batch=IMPORT_MAX_ROWS,
    max_connections=10,  # /v3/contacts allows 10 requests a second on every plan
    tags=False,
    interests=False,
    marketing_permissions=False,
    double_opt_in=True,  # POST /contacts/doubleOptinConfirmation with a template
    language=False,
    rename=True,  # attributes.EMAIL; a blocklisted contact stays blocklisted
    removal=Removal.UNLIST,
    webhooks=True,
    webhook_member_events=True,  # unsubscribed, hard bounces, contact updates and deletions
)


class BrevoProvider(HttpBacked):
    """Brevo behind the provider contract (``campaign_bridge.providers.base.Provider``)."""

    name = "brevo"
    capabilities = CAPABILITIES

    def __init__(
        self,
        destination: Any,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        page_size: int = 1000,
        poll_initial: float = 1.0,
        poll_max: float = 60.0,
        process_timeout: float = 3600.0,
        double_opt_in_template_id: int | None = None,
        double_opt_in_redirect_url: str | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        key = destination.api_key.get_secret_value()
        self.base_url = str(destination.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.list_id = str(destination.list_id)
        self.page_size = page_size
        self.doi_template = double_opt_in_template_id or getattr(
            destination, "double_opt_in_template_id", None
        )
        self.doi_redirect = double_opt_in_redirect_url or getattr(
            destination, "double_opt_in_redirect_url", None
        )
        # every attempt at /contacts, retries too, of every provider of this key
        self.pacer = KeyPacer(httpx.URL(self.base_url).host, key, sleep)
        self._http = ApiClient.for_destination(
            destination,
            base_url=self.base_url,
            api_key=key,
            headers={"api-key": key},
            provider=self.name,
            retry=retry,
            retriable=brevo_retriable,
            retry_after=brevo_retry_after,
            transport=transport,
            sleep=sleep,
            pacer=self.pacer,
        )
        self._session = BrevoSession(
            self._http,
            poll_initial=poll_initial,
            poll_max=poll_max,
            process_timeout=process_timeout,
            sleep=sleep,
        )
        self._attributes: frozenset[str] | None = None
        self._lists_seen: set[int] = set()
        self._readers: dict[int, ImportReader] = {}
        self._watch = ChangeWatch(self._session, page_size=min(page_size, PAGE_MAX))
        self._list_check = asyncio.Lock()
        self._counters: dict[str, tuple[float, Mapping[str, Any]]] = {}

    def server_time(self) -> datetime | None:
        """Brevo's clock at its latest answer, to the second (the ``Date`` header), or, when
        later, the newest change time (to the millisecond) of a contact this adapter's writes
        read back: a push's next refresh of changes starts there, so it does not list again
        the last second of the push's own writes (up to 20,000 contacts at an initial push's
        rate)."""
        return latest(self._http.server_time(), self._watch.newest_write)

    # --- account and audience ---------------------------------------------------------------

    async def check(self) -> dict[str, object]:
        attributes = await self._session.json("GET", "/contacts/attributes", what="reading")
        lists = await self._session.json("GET", "/contacts/lists", params={"limit": 1})
        return {
            "provider": self.name,
            "api_base_url": self.base_url,
            "account_id": None,  # GET /account is not used: it needs an account-level key
            "lists": lists.get("count"),
            "attributes": len(attributes.get("attributes") or ()),
        }

    async def audience(self, list_id: str) -> Audience:
        lid = list_number(list_id)
        lst, attributes = await asyncio.gather(
            self._session.json("GET", f"/contacts/lists/{lid}", list_id=list_id),
            self._session.json("GET", "/contacts/attributes"),
        )
        self._lists_seen.add(lid)  # a write to it needs no check of its own
        items = list(attributes.get("attributes") or ())
        self._attributes = frozenset(str(a.get("name")) for a in items)
        audience = audience_from(lst, items)
        doi = DOI_ATTRIBUTE in self._attributes and bool(self.doi_template)
        return Audience(audience.id, audience.name, audience.merge_fields, double_opt_in=doi)

    async def _attribute_names(self) -> frozenset[str]:
        if self._attributes is None:
            data = await self._session.json("GET", "/contacts/attributes")
            self._attributes = frozenset(str(a.get("name")) for a in data.get("attributes") or ())
        return self._attributes

    # --- members: writing -------------------------------------------------------------------

    async def upsert_members(self, list_id: str, members: Sequence[MemberUpsert]) -> list[Outcome]:
        lid = list_number(list_id)
        unique_keys(m.key for m in members)
        if lid not in self._lists_seen:  # an unknown list is named, not a 400 per record
            async with self._list_check:  # once, not once per worker starting at the same time
                if lid not in self._lists_seen:
                    await self._session.json("GET", f"/contacts/lists/{lid}", list_id=list_id)
                    self._lists_seen.add(lid)
        outcomes: dict[str, Outcome] = {}
        seen: set[str] = set()
        imports: dict[bool, list[MemberUpsert]] = {False: [], True: []}
        updates: list[MemberUpsert] = []
        singles: list[MemberUpsert] = []
        for member in members:
            rejected = precheck(member, seen)
            if rejected is not None:
                outcomes[member.key] = rejected
            elif importable(member):
                imports[member.status_if_new is S.UNSUBSCRIBED].append(member)
            elif bulk_update(member):
                updates.append(member)
            else:
                singles.append(member)
        existing: list[MemberUpsert] = []
        for start in range(0, len(updates), IMPORT_MAX_ROWS):
            async with self._watch.turn:
                chunk, changed = await self._watch.unchanged(
                    updates[start : start + IMPORT_MAX_ROWS]
                )
                if chunk:
                    done = await import_updates(self._session, self._watch, lid, chunk)
                    self._watch.saw(done.values())
                    outcomes.update(done)
            singles += changed
        for blocklist, group in imports.items():
            for start in range(0, len(group), IMPORT_MAX_ROWS):
                chunk = group[start : start + IMPORT_MAX_ROWS]
                found = await self._import(lid, chunk, blocklist=blocklist)
                existing += [m for m in chunk if m.key not in found]
                outcomes.update(found)
        await self._session.gather_limited(
            [bind(self._single, lid, m, outcomes) for m in singles + existing]
        )
        self._watch.saw(outcomes.values())
        return [outcomes[m.key] for m in members]

    async def _import(
        self, lid: int, members: Sequence[MemberUpsert], *, blocklist: bool
    ) -> dict[str, Outcome]:
        """Create ``members`` with one import; outcomes of those created or rejected (the
        rest already existed and were left untouched)."""
        sent = {m.key: attributes_of(m) for m in members}
        body = {
            "jsonBody": [{"email": m.email.strip(), "attributes": sent[m.key]} for m in members],
            "listIds": [lid],
            "updateExistingContacts": False,
            "emailBlacklist": blocklist,
            "disableNotification": True,
        }
        by_email = {normal_email(m.email): m for m in members}
        reader = self._readers.get(lid)
        if reader is None:
            reader = self._readers[lid] = ImportReader(
                self._session,
                lid,
                page_size=min(self.page_size, PAGE_MAX),
                max_wait=self._session.poll_initial,  # a ready import waits a poll at most
            )
        # Waited for before it is sent, so no row of it can be read unclaimed; Brevo's clock at
        # its latest answer (whole seconds) is no later than the import's rows.
        since = self._http.server_time() or datetime.now(UTC) - timedelta(minutes=1)
        ticket = reader.expect(since, list(by_email))
        status = S.UNSUBSCRIBED if blocklist else S.SUBSCRIBED
        try:
            started = await self._session.call("POST", "/contacts/import", json=body)
            if started.status_code != 202:
                raise translate(started, "starting a contact import")
            process_id = int((started.json() or {}).get("processId") or 0)
            # Every row read back: all created, no process to ask (GET /processes has 100
            # requests an hour). Rows still missing when the listing's end was read a poll
            # interval after the import was accepted: its process says why.
            poll = self._session.poll_initial
            rows = await reader.read_all(ticket, grace=poll, limit=30 * poll)
            outcomes: dict[str, Outcome] = {}
            if rows is None:
                process = await self._session.wait(process_id, "contact import")
                if process.status != "completed":
                    reader.cancel(ticket)
                    message = (
                        f"Brevo's import {process_id} ended {process.status}; it will be sent again"
                    )
                    return {
                        m.key: Outcome(m.key, K.RETRY, reason_code="import_failed", message=message)
                        for m in members
                    }
                outcomes = await import_rejections(self._session, process.body, by_email)
                reader.forget(ticket, [e for e, m in by_email.items() if m.key in outcomes])
                # The rest of its rows, read with those of every other import in flight
                # (``_brevo_readback``): a row not read back was there before, and takes the
                # next way, as does a contact read back without the import's status or values
                # (created meanwhile by someone else, or earlier in the same second).
                rows = await reader.collect(ticket)
        except BaseException:
            reader.cancel(ticket)
            raise
        times: dict[str | None, datetime | None] = {}  # an import's rows share a few stamps
        for email, contact in rows.items():
            member = by_email[email]
            if made_by_import(contact, member, lid, status, sent[member.key]):
                stamp = contact.get("modifiedAt")
                text = stamp if isinstance(stamp, str) else None  # not text: no time
                if text not in times:
                    times[text] = parse_time(text)
                outcomes[member.key] = Outcome(
                    member.key, K.CREATED, str(contact.get("id")), status, last_changed=times[text]
                )
        return outcomes

    async def _single(self, lid: int, member: MemberUpsert, outcomes: dict[str, Outcome]) -> None:
        """One member through the single-contact calls (module docstring)."""
        if member.previous_email is not None:
            outcomes[member.key] = await self._rename(lid, member)
            return
        contact = await self._read(member.email)
        if contact is None:
            outcomes[member.key] = await self._create(lid, member)
        else:
            outcomes[member.key] = await self._update(lid, member, contact)

    async def _read(self, email: str) -> dict[str, Any] | None:
        """The contact (with ``statistics``: a hard bounce makes a blocklisting ``cleaned``)."""
        path = f"/contacts/{quote(email.strip(), safe='')}"
        response = await self._session.call("GET", path, params={"identifierType": "email_id"})
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise translate(response, "reading a contact")
        contact: dict[str, Any] = response.json()
        return contact

    async def _create(self, lid: int, member: MemberUpsert) -> Outcome:
        new = member.status_if_new
        if new is S.TRANSACTIONAL:
            return Outcome(
                member.key,
                K.REJECTED,
                reason_code="status_not_supported",
                message="Brevo has no transactional-only contact on a list: set unconsented_new "
                "to skip or unsubscribed for a Brevo destination",
            )
        attributes = attributes_of(member)
        body: dict[str, Any] = {"email": member.email.strip(), "attributes": attributes}
        if new is S.PENDING:
            if not self.doi_template or not self.doi_redirect:
                return doi_missing(member.key)
            if DOI_ATTRIBUTE in await self._attribute_names():
                attributes[DOI_ATTRIBUTE] = 2
        else:
            body["listIds"] = [lid]
            body["emailBlacklisted"] = new is not S.SUBSCRIBED
        response = await self._session.call("POST", "/contacts", json=body)
        if response.status_code == 400 and parse_problem(response).code == "duplicate_parameter":
            contact = await self._read(member.email)  # created meanwhile: update it instead
            if contact is not None:
                return await self._update(lid, member, contact)
        if not response.is_success:
            return record_error(member.key, response, "creating a contact")
        member_id = str((response.json() or {}).get("id") or "") or None
        created = Outcome(member.key, K.CREATED, member_id, new)
        if new is S.PENDING:
            return await self._request_doi(lid, member, created)
        return created

    async def _update(self, lid: int, member: MemberUpsert, contact: Mapping[str, Any]) -> Outcome:
        member_id = str(contact.get("id"))
        current = status_of(contact, lid)
        body: dict[str, Any] = {}
        attributes = attributes_of(member)
        if attributes:
            body["attributes"] = attributes
        status, doi = current, False
        wanted = member.status
        if wanted is S.UNSUBSCRIBED and current not in (S.UNSUBSCRIBED, S.CLEANED):
            body["emailBlacklisted"] = True
            status = S.UNSUBSCRIBED
        elif wanted is S.SUBSCRIBED and current is not S.SUBSCRIBED:
            if contact.get("emailBlacklisted") or current is S.UNSUBSCRIBED:
                # The bridge never lifts a blocklist or undoes a member's unsubscribe: it asks
                # the person to confirm, and Brevo keeps the status until they do.
                if not (self.doi_template and self.doi_redirect):
                    return blocklisted(member.key, member_id, current)
                doi = True
            else:
                body["listIds"] = [lid]
                status = S.SUBSCRIBED
        elif wanted is None and current is S.ARCHIVED and joins(member):
            # In the account (another list) but never on this one as far as the caller knows.
            body["listIds"] = [lid]
            status = S.SUBSCRIBED
        elif wanted is S.PENDING and current is not S.SUBSCRIBED:
            if not (self.doi_template and self.doi_redirect):
                return doi_missing(member.key, member_id)
            status, doi = awaiting_confirmation(current), True
            if status is S.PENDING and DOI_ATTRIBUTE in await self._attribute_names():
                # Off the list until they confirm: marked asked, as a pending create is.
                body["attributes"] = {**attributes, DOI_ATTRIBUTE: 2}
        elif wanted is None and current is S.PENDING and member.finish_follow_up:
            # An earlier confirmation request failed: asked again only while still pending.
            doi = bool(self.doi_template and self.doi_redirect)
        if body:
            path = f"/contacts/{member_id}"
            response = await self._session.call(
                "PUT", path, params={"identifierType": "contact_id"}, json=body
            )
            if not response.is_success:
                return record_error(member.key, response, "updating a contact", member_id)
        updated = Outcome(member.key, K.UPDATED, member_id, status)
        if doi:
            return await self._request_doi(lid, member, updated)
        return updated

    async def _request_doi(self, lid: int, member: MemberUpsert, done: Outcome) -> Outcome:
        """Ask Brevo to send the double opt-in e-mail for a contact ``done`` made pending;
        a request that fails (after the client's retries) leaves ``done`` made, with the
        failure as its ``follow_up`` (asked again by the next run while still pending)."""
        body = {
            "email": member.email.strip(),
            "includeListIds": [lid],
            "templateId": int(self.doi_template or 0),
            "redirectionUrl": str(self.doi_redirect),
            "attributes": attributes_of(member),
        }
        what = "requesting a double opt-in confirmation"
        try:
            response = await self._session.call(
                "POST", "/contacts/doubleOptinConfirmation", json=body
            )
        except RetriableError as exc:
            return doi_unsent(done, exc)
        if response.is_success:
            return done
        failure = translate(response, what)
        if isinstance(failure, ProviderAuthError):
            raise failure
        return doi_unsent(done, failure)

    async def _rename(self, lid: int, member: MemberUpsert) -> Outcome:
        old = await self._read(str(member.previous_email))
        if old is None:
            return Outcome(
                member.key,
                K.REJECTED,
                reason_code="resource_not_found",
                message="the contact to give the new address to is not in Brevo",
            )
        body: dict[str, Any] = {
            "attributes": {**attributes_of(member), "EMAIL": member.email.strip()}
        }
        if old.get("emailBlacklisted"):
            body["emailBlacklisted"] = True  # Brevo lifts a blocklist on an address change
        member_id = str(old.get("id"))
        response = await self._session.call(
            "PUT", f"/contacts/{member_id}", params={"identifierType": "contact_id"}, json=body
        )
        if response.status_code == 400 and parse_problem(response).code == "duplicate_parameter":
            return Outcome(
                member.key,
                K.REJECTED,
                member_id,
                reason_code="email_taken",
                message="another Brevo contact already has the new address",
            )
        if not response.is_success:
            return record_error(member.key, response, "renaming a contact", member_id)
        return Outcome(member.key, K.UPDATED, member_id, status_of(old, lid))

    async def update_tags(self, list_id: str, changes: Sequence[TagChange]) -> list[Outcome]:
        """Brevo contacts have no tags: every change that asks for one is rejected."""
        list_number(list_id)
        unique_keys(c.key for c in changes)
        return [
            Outcome(c.key, K.UNCHANGED)
            if not (c.add or c.remove)
            else Outcome(
                c.key,
                K.REJECTED,
                reason_code="tags_not_supported",
                message="Brevo contacts have no tags; map the value to a boolean attribute "
                "(fields) instead of tags for a Brevo destination",
            )
            for c in changes
        ]

    async def archive_members(
        self, list_id: str, emails: Sequence[tuple[str, str]]
    ) -> list[Outcome]:
        """Remove from the list (the contact stays in the account); 150 a call."""
        lid = list_number(list_id)
        unique_keys(key for key, _ in emails)
        removed: set[str] = set()
        path = f"/contacts/lists/{lid}/contacts/remove"
        for start in range(0, len(emails), LIST_BATCH):
            chunk = [email.strip() for _, email in emails[start : start + LIST_BATCH]]
            response = await self._session.call("POST", path, json={"emails": chunk})
            if response.status_code == 404:
                raise list_missing(list_id)
            if response.is_success:
                done = (response.json().get("contacts") or {}).get("success") or ()
                removed.update(normal_email(str(e)) for e in done)
            elif response.status_code != 400:  # 400: none of them was on the list
                raise translate(response, "removing contacts from a list")
        return [
            Outcome(key, K.ARCHIVED, status=S.ARCHIVED)
            if normal_email(email) in removed
            else Outcome(
                key,
                K.UNCHANGED,
                reason_code="not_archivable",
                message="not on the list (never added, or already removed)",
            )
            for key, email in emails
        ]

    # --- members: reading -------------------------------------------------------------------

    async def read_members(
        self, list_id: str, emails: Sequence[tuple[str, str]]
    ) -> dict[str, MemberSnapshot | None]:
        lid = list_number(list_id)
        unique_keys(key for key, _ in emails)
        found: dict[str, MemberSnapshot | None] = {}

        async def one(key: str, email: str) -> None:
            contact = await self._read(email)
            found[key] = snapshot_from(contact, lid) if contact is not None else None

        await self._session.gather_limited([bind(one, k, e) for k, e in emails])
        return {key: found[key] for key, _ in emails}

    async def members_changed_since(
        self, list_id: str, since: datetime | None
    ) -> AsyncIterator[MemberSnapshot]:
        """Contacts on the list changed after ``since`` (``listIds``: the rest of the account
        is not read). One who left the list (``listUnsubscribed``) or was removed from it is
        not in this listing: ``contact_count`` counts the list, so pull reads the members it
        misses one by one (``read_members``). A listing does not say why a contact is
        blocklisted, so each blocklisted one is read once more: a hard bounce in its
        statistics (the last 90 days) makes it ``cleaned``."""
        lid = list_number(list_id)
        params: dict[str, str | int] = {"sort": "asc", "listIds": lid}
        if since is not None:
            params["modifiedSince"] = brevo_time(since)
        page: list[Mapping[str, Any]] = []
        marked = False
        async for contact in self._session.pages("/contacts", "contacts", params, self.page_size):
            if not marked:  # the statuses listed hold from (about) the first page's answer
                marked = self._watch.listed()
            if lid in (contact.get("listIds") or ()) or lid in (
                contact.get("listUnsubscribed") or ()
            ):
                page.append(contact)
            if len(page) >= self.page_size:
                for snapshot in await self._snapshots(page, lid):
                    yield snapshot
                page = []
        if not marked:
            self._watch.listed()
        for snapshot in await self._snapshots(page, lid):
            yield snapshot

    async def _snapshots(
        self, contacts: Sequence[Mapping[str, Any]], lid: int
    ) -> list[MemberSnapshot]:
        full: dict[int, Mapping[str, Any]] = {}

        async def refine(index: int, email: str) -> None:
            found = await self._read(email)
            if found is not None:
                full[index] = found

        blocked = [
            (i, str(c.get("email")))
            for i, c in enumerate(contacts)
            if c.get("emailBlacklisted") and c.get("email")
        ]
        await self._session.gather_limited([bind(refine, i, e) for i, e in blocked])
        found = (snapshot_from(full.get(i, c), lid) for i, c in enumerate(contacts))
        return [s for s in found if s is not None]

    async def contact_count(self, list_id: str) -> int | None:
        """How many contacts are on the list (blocklisted ones included; those removed from
        it or who left it are not: the core counts archived members out for ``unlist``)."""
        lid = list_number(list_id)
        data = await self._session.json("GET", f"/contacts/lists/{lid}", list_id=list_id)
        count = data.get("uniqueSubscribers")
        return count if isinstance(count, int) else None

    async def delete_member_permanently(self, list_id: str, member: MemberRef) -> str:
        path, kind = _contact_path(member)
        response = await self._session.call("DELETE", path, params={"identifierType": kind})
        if response.status_code == 404:
            return "not_found"
        if not response.is_success:
            raise translate(response, "erasing a contact")
        return "deleted"

    async def member_export(self, list_id: str, member: MemberRef) -> dict[str, Any] | None:
        path, kind = _contact_path(member)
        response = await self._session.call("GET", path, params={"identifierType": kind})
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise translate(response, "reading a contact for an access request")
        record: dict[str, Any] = response.json()
        events = await self._session.json(
            "GET", f"{path}/campaignStats", params={"identifierType": kind}
        )
        return {"record": record, "campaign_events": events}

    # --- campaigns --------------------------------------------------------------------------

    async def campaigns(self, since: datetime | None) -> AsyncIterator[Campaign]:
        params: dict[str, str | int] = {
            "type": "classic",
            "sort": "asc",
            "excludeHtmlContent": "true",
            "statistics": "globalStats",
        }
        async for item in self._session.pages("/emailCampaigns", "campaigns", params, 100):
            campaign = campaign_from(item)
            self._remember_counters(campaign.id, item.get("statistics") or {})
            if since is None or any(
                t is not None and t > since for t in (campaign.created_at, campaign.send_time)
            ):
                yield campaign

    async def campaign_report(self, campaign_id: str) -> CampaignReport:
        data = await self._session.json("GET", f"/emailCampaigns/{int(campaign_id)}")
        self._remember_counters(campaign_id, data.get("statistics") or {})
        return report_from(campaign_id, data.get("statistics") or {})

    def _remember_counters(self, campaign_id: str, statistics: Mapping[str, Any]) -> None:
        stats = statistics.get("globalStats")
        if isinstance(stats, Mapping):
            self._counters[campaign_id] = (time.monotonic(), stats)

    def _kinds_to_export(self, campaign_id: str, include_sent: bool) -> list[str]:
        """The exports worth asking for: a kind the campaign's counters, read moments ago,
        put at zero has no rows (each export costs a request of the hourly budget)."""
        read_at, stats = self._counters.get(campaign_id, (0.0, None))
        if time.monotonic() - read_at > COUNTERS_TRUSTED:
            stats = None
        return exports_for(stats, include_sent=include_sent)

    async def email_activity(
        self, campaign_id: str, since: datetime | None, *, include_sent: bool = False
    ) -> AsyncIterator[ActivityEvent]:
        """Per-recipient events from ``exportRecipients`` files, one kind at a time: Brevo
        lists each recipient once per kind (their first open, first click…), so an ``open``
        row means "opened at least once", as ``unique_opens`` counts.

        Every kind's export is asked for at once (Brevo runs them side by side) and watched
        from then on (one ``GET /processes`` polls them all), then the files are read in
        order, each one downloaded while the one before is turned into events. Kinds the
        campaign's counters put at zero are not asked for."""
        kinds = self._kinds_to_export(campaign_id, include_sent)
        path = f"/emailCampaigns/{int(campaign_id)}/exportRecipients"
        process_ids: list[int] = []
        for kind in kinds:
            response = await self._session.call("POST", path, json={"recipientsType": kind})
            if response.status_code == 400 and not process_ids:
                return  # not sent (yet): nothing to export
            if not response.is_success:
                raise translate(response, "exporting a campaign's recipients")
            process_ids.append(int(response.json()["processId"]))
        watched = [self._session.watch(pid) for pid in process_ids]
        ahead: asyncio.Task[str] | None = None
        try:
            for position, kind in enumerate(kinds):
                if ahead is None:
                    ahead = self._next_file(process_ids, watched, position)
                text = await ahead
                ahead = None
                if position + 1 < len(process_ids):
                    ahead = self._next_file(process_ids, watched, position + 1)
                for event in activity_from_export(campaign_id, kind, text, since):
                    yield event
        finally:
            if ahead is not None:
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)
            for pid in process_ids:
                self._session.forget(pid)

    def _next_file(
        self, process_ids: Sequence[int], watched: Sequence[asyncio.Future[Any]], position: int
    ) -> asyncio.Task[str]:
        return asyncio.ensure_future(self._export_file(process_ids[position], watched[position]))

    async def _export_file(self, process_id: int, watched: asyncio.Future[Any]) -> str:
        """The file of a recipient export, once its process is done."""
        process = await self._session.outcome(process_id, watched, "export")
        url = process.body.get("export_url")
        if process.status != "completed" or not url:
            raise ProviderError(f"Brevo's recipient export ended {process.status}")
        return await self._session.download(str(url))

    # --- webhooks ---------------------------------------------------------------------------

    async def webhook_urls(self, list_id: str) -> list[str]:
        data = await self._session.json("GET", "/webhooks", params={"type": "marketing"})
        return [str(h.get("url")) for h in data.get("webhooks") or ()]

    async def register_webhook(self, list_id: str, url: str) -> str:
        """A marketing webhook for every contact and campaign event, with the URL's last path
        segment (the bridge's webhook token) also sent as a bearer token; idempotent."""
        data = await self._session.json("GET", "/webhooks", params={"type": "marketing"})
        for hook in data.get("webhooks") or ():
            if hook.get("url") == url:
                return str(hook.get("id"))
        body = {
            "url": url,
            "description": "campaign-bridge",
            "type": "marketing",
            "events": list(WEBHOOK_EVENTS),
            "auth": {"type": "bearer", "token": url.rstrip("/").rsplit("/", 1)[-1]},
        }
        created = await self._session.json("POST", "/webhooks", json=body, what="registering")
        return str(created.get("id"))

    async def doctor_checks(
        self, audience: Audience, *, double_opt_in: bool
    ) -> list[DoctorFinding]:
        """Brevo's double opt-in needs its DOUBLE_OPT-IN attribute and a template."""
        if not double_opt_in:
            return []
        if DOI_ATTRIBUTE not in await self._attribute_names():
            return [
                DoctorFinding(
                    "double opt-in",
                    "fail",
                    f"the Brevo account has no {DOI_ATTRIBUTE} contact attribute",
                    "create it in Brevo (Contacts → Settings → Contact attributes: category "
                    "attribute DOUBLE_OPT-IN with Yes = 1, No = 2), or turn double_opt_in off",
                )
            ]
        if not self.doi_template:
            return [
                DoctorFinding(
                    "double opt-in",
                    "fail",
                    "no confirmation template is configured",
                    "set destination.double_opt_in_template_id",
                )
            ]
        return [DoctorFinding("double opt-in", "ok", f"template {self.doi_template}")]

    async def aclose(self) -> None:
        for reader in self._readers.values():
            await reader.close()
        await self._http.aclose()


def _contact_path(member: MemberRef) -> tuple[str, str]:
    """``/contacts/{identifier}`` and its ``identifierType``: Brevo's contact id as stored by
    the bridge, else the address. Brevo cannot find a contact by the bridge's own key."""
    if member.member_id and member.member_id.isdigit():
        return f"/contacts/{member.member_id}", "contact_id"
    if member.email:
        return f"/contacts/{quote(member.email.strip().lower(), safe='')}", "email_id"
    raise ProviderError(
        "a Brevo contact is found by its Brevo id or its address, and the state store has "
        "neither for this member; erase it in Brevo's web app (Contacts) by its address"
    )
