"""The provider contract suite: every adapter must pass it against its own sandbox.

A provider plugs in by writing a :class:`ProviderHarness` (how to build the adapter against the
sandbox, how to arrange provider-side state, inject faults and read the sandbox's state) and
generating its test class with :func:`contract_tests`::

    from campaign_bridge.testing.contract import contract_tests

    TestBrevoContract = contract_tests("Brevo", brevo_harness)

The tests speak only the contract (``providers.base``) and the harness — never a fake. What a
provider cannot do is read from its ``capabilities`` and the harness's ``features`` (below); a
test of something the provider lacks is skipped, saying why, and every rule that matters to
consent (never re-subscribe, a status untouched unless asked) holds for every provider.

Harness ``features`` (facts about the provider that the capabilities do not carry):

- ``account_id``: ``check()`` names the account;
- ``required_fields``: the audience can have required custom fields;
- ``forgotten``: an erased address can never be added back through the API;
- ``fake_email``: the provider refuses addresses it judges fake (``fake_email()``);
- ``signup_throttle``: a per-address signup throttle (``throttle_signups``);
- ``concurrency_probe``: the sandbox reports its peak of requests in flight;
- ``every_event``: per-recipient activity lists every open and click (else the first of each);
- ``lifts_unsubscribe``: an approved re-subscribe of a member the API unsubscribed takes effect
  at once (else the provider asks the member to confirm: the outcome is ``pending``);
- ``opt_out_until_confirmed``: a member asked to confirm a re-consent keeps its opted-out status
  at the provider until they do (Brevo's blocklist): the outcome says that status, not
  ``pending``;
- ``lists_removed``: ``members_changed_since`` also lists members removed from the audience;
- ``bare_403``: the sandbox can answer a bare 403 as a fault.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import pytest

from campaign_bridge.errors import ProviderAuthError, ProviderError, RetriableError
from campaign_bridge.providers.base import (
    Capabilities,
    MemberSnapshot,
    MemberStatus,
    MemberUpsert,
    Outcome,
    OutcomeKind,
    Provider,
    TagChange,
)

__all__ = [
    "HarnessFactory",
    "ProviderContract",
    "ProviderHarness",
    "SeedMember",
    "contract_tests",
]

S = MemberStatus
K = OutcomeKind


@dataclass(frozen=True)
class SeedMember:
    email: str
    status: str = "subscribed"
    origin: str = "admin"  # who unsubscribed/cleaned them: "user" (self) or "admin"/"api"
    tags: tuple[str, ...] = ()


class ProviderHarness(Protocol):
    """What the contract suite needs from a provider's sandbox."""

    list_id: str
    #: two ordinary text fields of the audience, as the mapping names them
    text_fields: tuple[str, str]
    #: a well-formed API key the sandbox does not know
    bad_api_key: str
    #: what the provider does beyond its capabilities (module docstring)
    features: frozenset[str]
    capabilities: Capabilities

    def provider(self, **options: Any) -> Provider:
        """A fresh adapter on the sandbox. Options (all optional): ``api_key``, ``list_id``,
        ``concurrency``, ``timeout_seconds``, ``max_retries``, ``fast_retries`` (tiny backoff),
        ``batch_threshold``, ``page_size``."""
        ...

    async def seed(self, members: Sequence[SeedMember]) -> None: ...

    async def forget(self, email: str) -> None:
        """Permanently delete (GDPR erase) a member."""
        ...

    async def member(self, email: str) -> dict[str, Any] | None:
        """The sandbox's record of a member: at least ``status`` and ``tags`` (names)."""
        ...

    async def member_count(self) -> int: ...

    async def fault(
        self,
        kind: str,
        *,
        path: str | None = None,
        count: int | None = 1,
        rate: float = 1.0,
        delay: float = 0.0,
        method: str | None = None,
    ) -> None:
        """Inject a fault: kind in 429, 403 (bare), 500, 502, 503, timeout, drop."""
        ...

    async def clear_faults(self) -> None: ...

    async def latency(self, seconds: float) -> None: ...

    async def concurrency_rejections(self) -> int:
        """How many requests the sandbox refused for exceeding the per-key concurrency limit."""
        ...

    async def peak_in_flight(self) -> int: ...

    async def throttle_signups(self, emails: Sequence[str]) -> None: ...

    async def advance_clock(self, seconds: float) -> datetime:
        """Move the sandbox clock forward; return its new 'now'."""
        ...

    async def touch(self, email: str) -> None:
        """Change a member provider-side (a profile edit), bumping its last change time."""
        ...

    async def add_required_field(self, tag: str) -> None: ...

    async def seed_campaign(self, recipients: int | None = None) -> str:
        """Create and send a campaign (to the audience's subscribers, or to N synthetic
        recipients); return its id."""
        ...

    def fake_email(self, local: str) -> str:
        """An address the provider rejects as fake."""
        ...

    def webhook_target(self) -> str:
        """A URL that answers the provider's validation GET with 2xx."""
        ...


def _asked_to_confirm(harness: ProviderHarness, opted_out: MemberStatus) -> MemberStatus:
    """The status an opted-out member asked to confirm a re-consent has until they do."""
    return opted_out if "opt_out_until_confirmed" in harness.features else MemberStatus.PENDING


def needs(harness: ProviderHarness, feature: str) -> None:
    """Skip unless the provider has ``feature`` (a harness feature or a capability)."""
    caps = harness.capabilities
    have = feature in harness.features or bool(getattr(caps, feature, False))
    if not have:
        pytest.skip(f"the provider has no {feature}")


def upsert(key: str, email: str, **kw: Any) -> MemberUpsert:
    kw.setdefault("status_if_new", S.SUBSCRIBED)
    return MemberUpsert(key=key, email=email, **kw)


def by_key(outcomes: Sequence[Outcome]) -> dict[str, Outcome]:
    return {o.key: o for o in outcomes}


class ProviderContract:
    """Subclass me with a ``harness`` fixture yielding a :class:`ProviderHarness`."""

    pytestmark = [pytest.mark.anyio]

    # --- account and audience --------------------------------------------------------------

    async def test_check_reports_the_account(self, harness: ProviderHarness) -> None:
        provider = harness.provider()
        try:
            facts = await provider.check()
        finally:
            await provider.aclose()
        assert facts["provider"] == provider.name
        if "account_id" in harness.features:
            assert facts.get("account_id")

    async def test_a_bad_key_is_an_auth_error_that_says_what_to_fix(
        self, harness: ProviderHarness
    ) -> None:
        provider = harness.provider(api_key=harness.bad_api_key)
        try:
            with pytest.raises(ProviderAuthError) as caught:
                await provider.check()
        finally:
            await provider.aclose()
        assert "check the API key" in str(caught.value)
        assert harness.bad_api_key not in str(caught.value)

    async def test_an_unknown_list_is_a_provider_error_naming_it(
        self, harness: ProviderHarness
    ) -> None:
        provider = harness.provider()
        try:
            with pytest.raises(ProviderError) as caught:
                await provider.audience("0000000000")
            with pytest.raises(ProviderError) as again:
                await provider.upsert_members("0000000000", [upsert("1", "a@corp.org")])
        finally:
            await provider.aclose()
        assert "0000000000" in str(caught.value)
        assert "0000000000" in str(again.value)

    async def test_audience_lists_its_merge_fields(self, harness: ProviderHarness) -> None:
        needs(harness, "required_fields")
        await harness.add_required_field("SHOESIZE")
        provider = harness.provider()
        try:
            audience = await provider.audience(harness.list_id)
        finally:
            await provider.aclose()
        assert audience.id == harness.list_id
        tags = {f.tag: f for f in audience.merge_fields}
        assert tags["SHOESIZE"].required is True
        assert harness.text_fields[0] in tags

    # --- upserts: outcomes ------------------------------------------------------------------

    async def test_upsert_outcomes_for_new_existing_and_bad_members(
        self, harness: ProviderHarness
    ) -> None:
        await harness.seed(
            [
                SeedMember("old@corp.org"),
                SeedMember("selfunsub@corp.org", "unsubscribed", origin="user"),
                SeedMember("gone@corp.org"),
            ]
        )
        await harness.forget("gone@corp.org")
        fake = harness.fake_email("fake")
        field = harness.text_fields[0]
        tags = ("vip",) if harness.capabilities.tags else ()
        members = [
            upsert("new", "New.Person@corp.org", merge_fields={field: "New"}, tags=tags),
            upsert("pending", "later@corp.org", status_if_new=S.PENDING),
            upsert("old", "old@corp.org", merge_fields={harness.text_fields[0]: "Old"}),
            upsert("resub", "selfunsub@corp.org", status=S.SUBSCRIBED, exists=True),
            upsert("gone", "gone@corp.org"),
            upsert("fake", fake),
            upsert("invalid", "not-an-address"),
            upsert("dup", "NEW.person@CORP.org"),
        ]
        provider = harness.provider()
        try:
            outcomes = await provider.upsert_members(harness.list_id, members)
        finally:
            await provider.aclose()
        assert [o.key for o in outcomes] == [m.key for m in members]
        got = by_key(outcomes)
        assert (got["new"].kind, got["new"].status) == (K.CREATED, S.SUBSCRIBED)
        assert (got["pending"].kind, got["pending"].status) == (K.CREATED, S.PENDING)
        assert (got["old"].kind, got["old"].status) == (K.UPDATED, S.SUBSCRIBED)
        # never re-subscribed: refused, or the member is asked to confirm
        resub = got["resub"]
        confirming = _asked_to_confirm(harness, S.UNSUBSCRIBED)
        assert resub.kind is K.REJECTED or (resub.kind, resub.status) == (K.UPDATED, confirming)
        expected_rejections = {"invalid": "invalid_email", "dup": "duplicate_email"}
        if resub.kind is K.REJECTED:
            expected_rejections["resub"] = str(resub.reason_code)
        if "forgotten" in harness.features:
            expected_rejections["gone"] = "forgotten_email"
        else:
            assert got["gone"].kind is K.CREATED
        if "fake_email" in harness.features:
            expected_rejections["fake"] = "fake_or_invalid_email"
        for key, reason in expected_rejections.items():
            assert (got[key].kind, got[key].reason_code) == (K.REJECTED, reason), key
            assert got[key].message
            assert "@" not in (got[key].message or ""), got[key].message
        assert all(o.member_id for o in outcomes if o.kind is not K.REJECTED)
        new = await harness.member("new.person@corp.org")
        assert new is not None
        assert new["status"] == "subscribed"
        assert set(tags) <= set(new["tags"])
        assert new["merge_fields"][harness.text_fields[0]] == "New"
        old = await harness.member("old@corp.org")
        assert old is not None
        assert old["merge_fields"][harness.text_fields[0]] == "Old"
        selfunsub = await harness.member("selfunsub@corp.org")
        assert selfunsub is not None
        # asked to confirm: still unsubscribed, or pending (unconfirmed: mailed nothing but the
        # confirmation) where the provider must change the subscription to let them confirm
        asked = resub.status is S.PENDING
        assert selfunsub["status"] in (("unsubscribed", "pending") if asked else ("unsubscribed",))

    @pytest.mark.parametrize("batch_threshold", [1000, 1], ids=["direct", "batches"])
    @pytest.mark.parametrize("hint", [True, None], ids=["known", "unknown"])
    async def test_status_none_never_changes_an_existing_status(
        self, harness: ProviderHarness, batch_threshold: int, hint: bool | None
    ) -> None:
        seeded = [
            SeedMember("apiunsub@corp.org", "unsubscribed", origin="api"),
            SeedMember("adminunsub@corp.org", "unsubscribed", origin="admin"),
            SeedMember("selfunsub@corp.org", "unsubscribed", origin="user"),
            SeedMember("bounced@corp.org", "cleaned", origin="user"),
            SeedMember("waiting@corp.org", "pending"),
        ]
        if harness.capabilities.transactional_status:
            seeded.append(SeedMember("txn@corp.org", "transactional"))
        await harness.seed(seeded)
        field = harness.text_fields[0]
        members = [
            upsert(m.email, m.email, exists=hint, merge_fields={field: "Changed"}) for m in seeded
        ]
        provider = harness.provider(batch_threshold=batch_threshold)
        try:
            outcomes = await provider.upsert_members(harness.list_id, members)
        finally:
            await provider.aclose()
        for member, outcome in zip(seeded, outcomes, strict=True):
            record = await harness.member(member.email)
            assert record is not None
            assert record["status"] == member.status, member.email
            assert outcome.kind is K.UPDATED, outcome
            assert outcome.status == MemberStatus(member.status)
            assert record["merge_fields"][harness.text_fields[0]] == "Changed"

    async def test_an_approved_status_change_is_applied(self, harness: ProviderHarness) -> None:
        await harness.seed(
            [
                SeedMember("selfunsub@corp.org", "unsubscribed", origin="user"),
                SeedMember("apiunsub@corp.org", "unsubscribed", origin="api"),
                SeedMember("leaving@corp.org"),
            ]
        )
        members = [
            upsert("a", "selfunsub@corp.org", status=S.PENDING, exists=True),
            upsert("b", "apiunsub@corp.org", status=S.SUBSCRIBED, exists=True),
            upsert("c", "leaving@corp.org", status=S.UNSUBSCRIBED, exists=True),
        ]
        provider = harness.provider()
        try:
            got = by_key(await provider.upsert_members(harness.list_id, members))
        finally:
            await provider.aclose()
        lifts = "lifts_unsubscribe" in harness.features
        # A provider that never lifts an unsubscribe itself asks the member to confirm instead,
        # and shows them unsubscribed until they do.
        asked_status = _asked_to_confirm(harness, S.UNSUBSCRIBED)
        assert [(got[k].kind, got[k].status) for k in "abc"] == [
            (K.UPDATED, asked_status),
            (K.UPDATED, S.SUBSCRIBED if lifts else asked_status),
            (K.UPDATED, S.UNSUBSCRIBED),
        ]
        # (pending: the provider made the subscription unconfirmed so that they can confirm)
        asked = ("unsubscribed", "pending")
        for email, statuses in [
            ("selfunsub@corp.org", ("pending",) if lifts else asked),
            ("apiunsub@corp.org", ("subscribed",) if lifts else asked),
            ("leaving@corp.org", ("unsubscribed",)),
        ]:
            record = await harness.member(email)
            assert record is not None
            assert record["status"] in statuses, email

    async def test_an_explicit_status_applies_to_existing_members_only(
        self, harness: ProviderHarness
    ) -> None:
        await harness.seed([SeedMember("selfunsub@corp.org", "unsubscribed", origin="user")])
        caps = harness.capabilities
        if_new = S.TRANSACTIONAL if caps.transactional_status else S.UNSUBSCRIBED
        tags = ("t2",) if caps.tags else ()
        members = [
            # unknown to the caller: found to exist, then the approved change is applied
            upsert("old", "selfunsub@corp.org", status=S.PENDING),
            # unknown and new: created with status_if_new, never with `status`
            upsert(
                "new",
                "brandnew@corp.org",
                status=S.SUBSCRIBED,
                status_if_new=if_new,
                tags=tags,
            ),
        ]
        provider = harness.provider()
        try:
            got = by_key(await provider.upsert_members(harness.list_id, members))
        finally:
            await provider.aclose()
        asked = _asked_to_confirm(harness, S.UNSUBSCRIBED)
        assert (got["old"].kind, got["old"].status) == (K.UPDATED, asked)
        assert (got["new"].kind, got["new"].status) == (K.CREATED, if_new)
        new = await harness.member("brandnew@corp.org")
        assert new is not None
        assert new["status"] == str(if_new)
        assert set(tags) <= set(new["tags"])

    async def test_a_wrong_exists_hint_still_lands(self, harness: ProviderHarness) -> None:
        tags = ("t1",) if harness.capabilities.tags else ()
        members = [upsert("ghost", "ghost@corp.org", exists=True, tags=tags)]
        provider = harness.provider()
        try:
            outcome = (await provider.upsert_members(harness.list_id, members))[0]
        finally:
            await provider.aclose()
        assert outcome.kind in (K.CREATED, K.UPDATED)
        assert outcome.status is S.SUBSCRIBED
        record = await harness.member("ghost@corp.org")
        assert record is not None
        assert record["status"] == "subscribed"
        assert set(tags) <= set(record["tags"])

    async def test_signup_throttle_is_a_temporary_rejection(self, harness: ProviderHarness) -> None:
        needs(harness, "signup_throttle")
        await harness.throttle_signups(["busy@corp.org"])
        provider = harness.provider()
        try:
            outcome = (
                await provider.upsert_members(harness.list_id, [upsert("b", "busy@corp.org")])
            )[0]
        finally:
            await provider.aclose()
        assert (outcome.kind, outcome.reason_code) == (K.REJECTED, "signup_throttled")
        assert outcome.message is not None
        assert "later run" in outcome.message
        assert "@" not in outcome.message

    async def test_invalid_merge_fields_are_rejected_with_the_field_named(
        self, harness: ProviderHarness
    ) -> None:
        needs(harness, "required_fields")
        await harness.add_required_field("SHOESIZE")
        members = [
            upsert("missing", "nosize@corp.org"),
            upsert("fine", "size@corp.org", merge_fields={"SHOESIZE": "42"}),
            upsert("known", "known@corp.org", exists=True),
        ]
        provider = harness.provider()
        try:
            got = by_key(await provider.upsert_members(harness.list_id, members))
        finally:
            await provider.aclose()
        assert got["fine"].kind is K.CREATED
        for key in ("missing", "known"):
            assert (got[key].kind, got[key].reason_code) == (K.REJECTED, "merge_fields_invalid")
            assert "SHOESIZE" in (got[key].message or "")

    async def test_bad_text_is_rejected_per_record_while_the_rest_lands(
        self, harness: ProviderHarness
    ) -> None:
        from decimal import Decimal

        members = [
            upsert("surrogate", "caf@corp.org", merge_fields={harness.text_fields[0]: "caf\udce9"}),
            upsert("nul", "nul@corp.org", merge_fields={harness.text_fields[0]: "a\x00b"}),
            upsert("long", "long@corp.org", merge_fields={harness.text_fields[0]: "x" * 5000}),
            upsert(
                "decimal", "dec@corp.org", merge_fields={harness.text_fields[1]: Decimal("12.50")}
            ),
            upsert("ok", "fine@corp.org", merge_fields={harness.text_fields[0]: "Zoë"}),
        ]
        provider = harness.provider()
        try:
            got = by_key(await provider.upsert_members(harness.list_id, members))
        finally:
            await provider.aclose()
        assert (got["surrogate"].kind, got["surrogate"].reason_code) == (
            K.REJECTED,
            "invalid_text",
        )
        assert got["ok"].kind is K.CREATED
        assert got["decimal"].kind is K.CREATED
        for key in ("nul", "long"):  # the provider decides; either way it is per record
            assert got[key].kind in (K.CREATED, K.REJECTED), got[key]
        fine = await harness.member("fine@corp.org")
        assert fine is not None
        assert fine["merge_fields"][harness.text_fields[0]] == "Zoë"
        assert await harness.member("caf@corp.org") is None

    async def test_large_upserts_use_the_bulk_paths(self, harness: ProviderHarness) -> None:
        news = [upsert(f"n{i}", f"bulk{i}@corp.org") for i in range(1100)]
        provider = harness.provider(batch_threshold=50)
        try:
            first = await provider.upsert_members(harness.list_id, news)
            again = [
                upsert(m.key, m.email, exists=True, merge_fields={harness.text_fields[0]: "X"})
                for m in news[:120]
            ]
            second = await provider.upsert_members(harness.list_id, again)
        finally:
            await provider.aclose()
        assert Counter(o.kind for o in first) == {K.CREATED: 1100}
        assert Counter(o.kind for o in second) == {K.UPDATED: 120}
        assert await harness.member_count() == 1100
        record = await harness.member("bulk7@corp.org")
        assert record is not None
        assert record["merge_fields"][harness.text_fields[0]] == "X"

    # --- tags and archive -------------------------------------------------------------------

    async def test_tag_changes(self, harness: ProviderHarness) -> None:
        needs(harness, "tags")
        await harness.seed([SeedMember("tagged@corp.org", tags=("old", "keep"))])
        changes = [
            TagChange("t", "tagged@corp.org", add=("new",), remove=("old",)),
            TagChange("nobody", "nobody@corp.org", add=("new",)),
            TagChange("noop", "tagged@corp.org"),
        ]
        provider = harness.provider()
        try:
            got = by_key(await provider.update_tags(harness.list_id, changes))
        finally:
            await provider.aclose()
        assert got["t"].kind is K.UPDATED
        assert (got["nobody"].kind, got["nobody"].reason_code) == (
            K.REJECTED,
            "resource_not_found",
        )
        assert got["noop"].kind is K.UNCHANGED
        record = await harness.member("tagged@corp.org")
        assert record is not None
        assert set(record["tags"]) == {"new", "keep"}

    @pytest.mark.parametrize("batch_threshold", [1000, 1], ids=["direct", "batches"])
    async def test_archive(self, harness: ProviderHarness, batch_threshold: int) -> None:
        await harness.seed([SeedMember("bye@corp.org"), SeedMember("stay@corp.org")])
        provider = harness.provider(batch_threshold=batch_threshold)
        try:
            first = await provider.archive_members(
                harness.list_id, [("a", "bye@corp.org"), ("b", "never@corp.org")]
            )
            second = await provider.archive_members(harness.list_id, [("a", "bye@corp.org")])
        finally:
            await provider.aclose()
        assert (first[0].kind, first[0].status) == (K.ARCHIVED, S.ARCHIVED)
        assert first[1].kind is K.UNCHANGED
        assert first[1].reason_code in ("not_archivable", "resource_not_found")
        assert second[0].kind is K.UNCHANGED
        bye = await harness.member("bye@corp.org")
        stay = await harness.member("stay@corp.org")
        assert bye is not None
        assert stay is not None
        assert (bye["status"], stay["status"]) == ("archived", "subscribed")

    # --- reading members --------------------------------------------------------------------

    async def test_members_changed_since_pages_through_every_status(
        self, harness: ProviderHarness
    ) -> None:
        statuses = ["subscribed", "unsubscribed", "cleaned", "pending", "transactional"]
        if not harness.capabilities.transactional_status:
            statuses[4] = "subscribed"
        removed = "lists_removed" in harness.features
        if not removed:  # pending members are off the list until they confirm
            statuses[3] = "unsubscribed"
        seeded = [SeedMember(f"m{i}@corp.org", statuses[i % 5]) for i in range(23)]
        await harness.seed(seeded)
        provider = harness.provider(page_size=4)
        try:
            await provider.archive_members(harness.list_id, [("x", "m0@corp.org")])
            everyone = [s async for s in provider.members_changed_since(harness.list_id, None)]
            moment = await harness.advance_clock(60)
            await harness.advance_clock(60)
            for email in ("m3@corp.org", "m11@corp.org", "m20@corp.org"):
                await harness.touch(email)
            changed = [s async for s in provider.members_changed_since(harness.list_id, moment)]
        finally:
            await provider.aclose()
        listed = [m.email for m in seeded if removed or m.email != "m0@corp.org"]
        assert sorted(s.email for s in everyone) == sorted(listed)
        assert len({s.member_id for s in everyone}) == len(listed)
        status_of = {s.email: s.status for s in everyone}
        if removed:
            assert status_of["m0@corp.org"] is S.ARCHIVED
        assert status_of["m1@corp.org"] is S.UNSUBSCRIBED
        assert all(isinstance(s, MemberSnapshot) and s.last_changed for s in everyone)
        assert sorted(s.email for s in changed) == ["m11@corp.org", "m20@corp.org", "m3@corp.org"]

    async def test_members_that_change_while_paging_are_not_lost(
        self, harness: ProviderHarness
    ) -> None:
        seeded = [SeedMember(f"p{i:02}@corp.org") for i in range(20)]
        await harness.seed(seeded)
        await harness.advance_clock(10)
        # spread last_changed so the order is well defined
        for member in seeded:
            await harness.touch(member.email)
            await harness.advance_clock(1)
        provider = harness.provider(page_size=5)
        seen: list[str] = []
        try:
            async for snapshot in provider.members_changed_since(harness.list_id, None):
                seen.append(snapshot.email)
                if len(seen) == 6:
                    # two members already read change: everything after them shifts left
                    await harness.touch(seen[0])
                    await harness.touch(seen[1])
        finally:
            await provider.aclose()
        assert set(seen) == {m.email for m in seeded}

    # --- faults, retries, budget ------------------------------------------------------------

    async def test_429_storm_converges(self, harness: ProviderHarness) -> None:
        await harness.seed([SeedMember(f"e{i}@corp.org") for i in range(30)])
        await harness.fault("429", rate=0.4, count=None)
        members = [upsert(f"n{i}", f"s{i}@corp.org") for i in range(600)]
        members += [upsert(f"e{i}", f"e{i}@corp.org", exists=True) for i in range(30)]
        provider = harness.provider(fast_retries=True, max_retries=30)
        try:
            outcomes = await provider.upsert_members(harness.list_id, members)
            retries = sum(provider.stats.retries.values())  # type: ignore[attr-defined]
        finally:
            await provider.aclose()
        await harness.clear_faults()
        assert Counter(o.kind for o in outcomes) == {K.CREATED: 600, K.UPDATED: 30}
        assert retries > 0
        assert await harness.member_count() == 630

    @pytest.mark.parametrize("kind", ["500", "502", "503", "403", "drop"])
    @pytest.mark.parametrize("batch_threshold", [1000, 1], ids=["direct", "batches"])
    async def test_server_faults_converge(
        self, harness: ProviderHarness, kind: str, batch_threshold: int
    ) -> None:
        if kind == "403":
            needs(harness, "bare_403")
        await harness.seed([SeedMember("known@corp.org")])
        await harness.fault(kind, count=3)
        members = [upsert("new", "fresh@corp.org"), upsert("k", "known@corp.org", exists=True)]
        provider = harness.provider(fast_retries=True, batch_threshold=batch_threshold)
        try:
            got = by_key(await provider.upsert_members(harness.list_id, members))
            if harness.capabilities.tags:
                tags = await provider.update_tags(
                    harness.list_id, [TagChange("k", "known@corp.org", add=("x",))]
                )
                assert tags[0].kind is K.UPDATED
        finally:
            await provider.aclose()
        assert (got["new"].kind, got["k"].kind) == (K.CREATED, K.UPDATED)
        record = await harness.member("known@corp.org")
        assert record is not None
        if harness.capabilities.tags:
            assert "x" in record["tags"]

    async def test_timeouts_are_retried(self, harness: ProviderHarness) -> None:
        await harness.fault("timeout", count=2, delay=2.0)
        provider = harness.provider(fast_retries=True, timeout_seconds=1.0)
        try:
            outcome = (
                await provider.upsert_members(harness.list_id, [upsert("a", "slow@corp.org")])
            )[0]
            timeouts = provider.stats.requests["timeout"]  # type: ignore[attr-defined]
        finally:
            await provider.aclose()
        # A request that timed out on our side may still have been done by the provider, so
        # the member may come back as created or (found to exist) updated; either way it is in.
        assert outcome.kind in (K.CREATED, K.UPDATED)
        assert outcome.status is S.SUBSCRIBED
        assert timeouts == 2
        record = await harness.member("slow@corp.org")
        assert record is not None
        assert record["status"] == "subscribed"

    async def test_exhausted_retries_raise_retriable_error(self, harness: ProviderHarness) -> None:
        await harness.fault("503", count=None)
        provider = harness.provider(fast_retries=True, max_retries=2)
        try:
            with pytest.raises(RetriableError):
                await provider.upsert_members(harness.list_id, [upsert("a", "x@corp.org")])
        finally:
            await provider.aclose()
        await harness.clear_faults()

    async def test_the_concurrency_budget_is_never_exceeded(self, harness: ProviderHarness) -> None:
        needs(harness, "concurrency_probe")
        # Long enough that all 10 slots fill even on a busy machine (with 0.02 s a loaded host
        # sometimes answered before the tenth call was sent, and the peak was 9).
        await harness.latency(0.1)
        first = harness.provider(concurrency=10)
        second = harness.provider(concurrency=10)  # same key: shares the budget

        async def push(provider: Provider, n: int) -> list[Outcome]:
            members = [upsert(f"{n}-{i}", f"c{n}x{i}@corp.org") for i in range(8)]
            created = await provider.upsert_members(harness.list_id, members)
            again = [upsert(m.key, m.email, exists=True) for m in members[:3]]
            return created + await provider.upsert_members(harness.list_id, again)

        try:
            results = await asyncio.gather(
                *(push(first if n % 2 else second, n) for n in range(50))
            )
        finally:
            await first.aclose()
            await second.aclose()
            await harness.latency(0.0)
        outcomes = [o for group in results for o in group]
        assert Counter(o.kind for o in outcomes) == {K.CREATED: 400, K.UPDATED: 150}
        assert await harness.concurrency_rejections() == 0
        assert await harness.peak_in_flight() == 10

    # --- campaigns --------------------------------------------------------------------------

    async def test_campaigns_reports_and_activity(self, harness: ProviderHarness) -> None:
        await harness.seed([SeedMember(f"r{i}@corp.org") for i in range(40)])
        before = await harness.advance_clock(5)
        await harness.advance_clock(5)
        campaign_id = await harness.seed_campaign()
        provider = harness.provider(page_size=7)
        try:
            campaigns = [c async for c in provider.campaigns(before)]
            later = await harness.advance_clock(30 * 24 * 3600)
            none_after = [c async for c in provider.campaigns(later)]
            report = await provider.campaign_report(campaign_id)
            events = [e async for e in provider.email_activity(campaign_id, None)]
            with_sent = [
                e async for e in provider.email_activity(campaign_id, None, include_sent=True)
            ]
            times = sorted(e.occurred_at for e in events)
            middle = times[len(times) // 2]
            recent = [e async for e in provider.email_activity(campaign_id, middle)]
        finally:
            await provider.aclose()
        # at-least-once from `since` on: every event at or after it, none before
        assert sorted(e.occurred_at for e in recent) == [t for t in times if t >= middle]
        assert [c.id for c in campaigns] == [campaign_id]
        assert campaigns[0].list_id == harness.list_id
        assert none_after == []
        assert report.emails_sent == 40
        actions = Counter(e.action for e in events)
        assert report.opens_total >= report.unique_opens > 0
        assert actions["bounce"] == report.hard_bounces + report.soft_bounces
        if not harness.capabilities.campaign_activity:
            # counters only, plus the per-recipient events the provider does list (bounces)
            assert set(actions) <= {"bounce", "unsubscribe"}
            return
        if "every_event" in harness.features:
            assert actions["open"] == report.opens_total
            assert actions["click"] == report.clicks_total
        else:  # one row per recipient and kind: "opened at least once"
            assert actions["open"] == report.unique_opens
            assert actions["click"] == report.unique_clicks
        assert actions["bounce"] == report.hard_bounces + report.soft_bounces
        assert actions["unsubscribe"] == report.unsubscribed
        assert Counter(e.action for e in with_sent)["sent"] == 40

    # --- webhooks ---------------------------------------------------------------------------

    async def test_register_webhook_is_idempotent(self, harness: ProviderHarness) -> None:
        needs(harness, "webhooks")
        url = harness.webhook_target()
        provider = harness.provider()
        try:
            first = await provider.register_webhook(harness.list_id, url)
            second = await provider.register_webhook(harness.list_id, url)
        finally:
            await provider.aclose()
        assert first
        assert first == second


HarnessFactory = Callable[[pytest.FixtureRequest], Iterator[ProviderHarness]]


def contract_tests(provider: str, make_harness: HarnessFactory) -> type[ProviderContract]:
    """A pytest test class running every contract test with harnesses from ``make_harness``
    (a generator function taking the fixture request: set up, yield the harness, clean up)."""

    class Suite(ProviderContract):
        @pytest.fixture
        def harness(self, request: pytest.FixtureRequest) -> Iterator[ProviderHarness]:
            yield from make_harness(request)

    Suite.__name__ = Suite.__qualname__ = f"Test{provider}Contract"
    Suite.__doc__ = f"Every provider contract test, against the {provider} sandbox."
    return Suite
