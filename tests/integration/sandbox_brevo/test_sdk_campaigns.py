"""The official SDK drives the sandbox's email campaigns: create, send, statistics, and the
per-contact marketing events a send generates (deterministically)."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from brevo import Brevo
from brevo.email_campaigns import (
    CreateEmailCampaignRequestRecipients,
    CreateEmailCampaignRequestSender,
)
from brevo.errors import BadRequestError, NotFoundError

from campaign_bridge.sandbox.brevo import BrevoConfig, BrevoHandle, run_in_thread
from campaign_bridge.sandbox.brevo.campaigns import book

from .conftest import START, sdk_client


def _audience(sdk: Brevo, list_id: int, count: int) -> None:
    sdk.contacts.import_contacts(
        json_body=[{"email": f"r{i}@example.org"} for i in range(count)], list_ids=[list_id]
    )
    sdk.process.get_processes()  # the import is applied before the next call is answered


def _send(sdk: Brevo, list_id: int, exclusions: list[int] | None = None) -> int:
    created = sdk.email_campaigns.create_email_campaign(
        name="June news",
        subject="Hello",
        sender=CreateEmailCampaignRequestSender(name="News", email="news@example.org"),
        html_content="<p>Hi</p>",
        recipients=CreateEmailCampaignRequestRecipients(
            list_ids=[list_id], exclusion_list_ids=exclusions or []
        ),
        tag="june",
    )
    sdk.email_campaigns.send_email_campaign_now(created.id)
    return created.id


def test_send_generates_activity_that_statistics_and_contacts_agree_on(
    sdk: Brevo, brevo_sandbox: BrevoHandle, control: httpx.Client
) -> None:
    list_id = brevo_sandbox.list_id
    assert list_id is not None
    _audience(sdk, list_id, 400)
    sdk.contacts.update_contact("r0@example.org", email_blacklisted=True)
    control.post("/contacts/r1@example.org/unsubscribe", json={"listId": list_id})
    campaign_id = _send(sdk, list_id)

    campaign = sdk.email_campaigns.get_email_campaign(campaign_id, statistics="globalStats")
    assert campaign.status == "sent"
    stats = campaign.statistics.global_stats
    events = [e for e in book(brevo_sandbox.sandbox).events if e.campaign_id == campaign_id]
    by_kind = Counter(e.kind for e in events)
    assert stats.sent == by_kind["sent"] == 398  # the blocklisted and the unsubscribed are skipped
    assert stats.delivered == by_kind["delivered"]
    assert stats.hard_bounces == by_kind["hard_bounce"] > 0
    assert stats.soft_bounces == by_kind["soft_bounce"] > 0
    assert stats.unique_views == by_kind["opened"] > 0
    assert stats.unique_clicks == by_kind["clicked"] > 0
    assert stats.unsubscriptions == by_kind["unsubscribed"] > 0
    assert stats.delivered + stats.hard_bounces + stats.soft_bounces == stats.sent

    # every unsubscriber and hard bounce is now blocklisted; per-contact events agree
    unsubscriber = next(e.email for e in events if e.kind == "unsubscribed")
    assert sdk.contacts.get_contact_info(unsubscriber).email_blacklisted is True
    bounced = next(e.email for e in events if e.kind == "hard_bounce")
    assert sdk.contacts.get_contact_info(bounced).email_blacklisted is True
    history = sdk.contacts.get_contact_stats(unsubscriber)
    assert [m.campaign_id for m in history.messages_sent or []] == [campaign_id]
    assert history.unsubscriptions is not None
    assert [u.campaign_id for u in history.unsubscriptions.user_unsubscription] == [campaign_id]
    assert sdk.contacts.get_contact_stats("r0@example.org").dict(exclude_none=True) == {}

    listed = sdk.email_campaigns.get_email_campaigns(status="sent", exclude_html_content=True)
    assert [c.id for c in listed.campaigns] == [campaign_id]
    assert sdk.email_campaigns.get_email_campaigns(status="draft").count == 0
    with pytest.raises(BadRequestError) as again:
        sdk.email_campaigns.send_email_campaign_now(campaign_id)
    assert again.value.body == {
        "code": "campaign_sent",
        "message": "Campaign has already been sent",
    }
    with pytest.raises(NotFoundError):
        sdk.email_campaigns.get_email_campaign(campaign_id + 1)
    with pytest.raises(BadRequestError) as over:
        sdk.email_campaigns.get_email_campaigns(limit=101)
    assert over.value.body["code"] == "out_of_range"


def test_activity_is_deterministic_for_a_seed() -> None:
    outcomes = []
    for _ in range(2):
        with (
            run_in_thread(config=BrevoConfig(start_time=START, seed=7)) as handle,
            sdk_client(handle.base_url, handle.api_key) as sdk,
        ):
            assert handle.list_id is not None
            _audience(sdk, handle.list_id, 200)
            campaign_id = _send(sdk, handle.list_id)
            outcomes.append(
                [
                    (e.kind, e.email, e.at)
                    for e in book(handle.sandbox).events
                    if e.campaign_id == campaign_id
                ]
            )
    assert outcomes[0] == outcomes[1]
    assert len(outcomes[0]) > 400


def test_contact_statistics_window(sdk: Brevo, brevo_sandbox: BrevoHandle) -> None:
    assert brevo_sandbox.list_id is not None
    _audience(sdk, brevo_sandbox.list_id, 5)
    campaign_id = _send(sdk, brevo_sandbox.list_id)
    day = START.date().isoformat()
    inside = sdk.contacts.get_contact_stats("r2@example.org", start_date=day, end_date=day)
    assert [m.campaign_id for m in inside.messages_sent or []] == [campaign_id]
    before = sdk.contacts.get_contact_stats(
        "r2@example.org", start_date="2026-01-01", end_date="2026-01-31"
    )
    assert before.dict(exclude_none=True) == {}
    with pytest.raises(BadRequestError) as wide:
        sdk.contacts.get_contact_stats(
            "r2@example.org", start_date="2026-01-01", end_date="2026-06-01"
        )
    assert wide.value.body == {
        "code": "invalid_parameter",
        "message": "The maximum date range is 90 days",
    }


def test_simulated_events_reach_campaign_and_contact(
    sdk: Brevo, brevo_sandbox: BrevoHandle, control: httpx.Client
) -> None:
    assert brevo_sandbox.list_id is not None
    control.put(
        "/activity",
        json={
            "rates": dict.fromkeys(("hard_bounce", "soft_bounce", "open", "unsubscribe", "spam"), 0)
        },
    )
    _audience(sdk, brevo_sandbox.list_id, 4)
    campaign_id = _send(sdk, brevo_sandbox.list_id)
    assert (
        control.post("/contacts/r0@example.org/spam", json={"campaignId": campaign_id}).status_code
        == 200
    )
    assert (
        control.post(
            "/contacts/r1@example.org/bounce", json={"type": "soft", "campaignId": campaign_id}
        ).status_code
        == 200
    )
    assert control.post("/contacts/r2@example.org/blocklist").status_code == 200
    stats = sdk.email_campaigns.get_email_campaign(campaign_id).statistics.global_stats
    assert (stats.delivered, stats.complaints, stats.soft_bounces, stats.unique_views) == (
        4,
        1,
        1,
        0,
    )
    assert sdk.contacts.get_contact_info("r0@example.org").email_blacklisted is True
    assert sdk.contacts.get_contact_info("r1@example.org").email_blacklisted is False
    admin = sdk.contacts.get_contact_stats("r2@example.org").unsubscriptions
    assert admin is not None
    assert len(admin.admin_unsubscription) == 1
    state = control.get("/contacts/r2@example.org").json()
    assert (state["emailBlacklisted"], state["blacklistReason"]) == (True, "admin")


def test_export_recipients_lists_a_campaigns_activity(
    sdk: Brevo, brevo_sandbox: BrevoHandle, control: httpx.Client
) -> None:
    assert brevo_sandbox.list_id is not None
    _audience(sdk, brevo_sandbox.list_id, 200)
    campaign_id = _send(sdk, brevo_sandbox.list_id)
    control.post("/limits", json={"import_queue_seconds": 30})
    started = sdk.email_campaigns.email_export_recipients(campaign_id, recipients_type="openers")
    assert sdk.process.get_process(started.process_id).status == "queued"
    control.post("/clock", json={"advance": 31})
    done = sdk.process.get_process(started.process_id)
    assert (done.status, done.name) == ("completed", "CAMPAIGN_USER_DETAILS")
    lines = httpx.get(done.export_url or "").text.splitlines()
    assert lines[0] == "CONTACT_ID;EMAIL;EVENT;EVENT_TIME"
    openers = {
        e.email
        for e in book(brevo_sandbox.sandbox).events
        if e.kind == "opened" and e.campaign_id == campaign_id
    }
    assert {line.split(";")[1] for line in lines[1:]} == openers
    assert all(line.split(";")[2] == "opened" for line in lines[1:])
    everyone = sdk.email_campaigns.email_export_recipients(campaign_id, recipients_type="all")
    control.post("/clock", json={"advance": 31})
    rows = httpx.get(sdk.process.get_process(everyone.process_id).export_url or "").text
    assert len(rows.splitlines()) == 1 + 200
    draft = sdk.email_campaigns.create_email_campaign(
        name="Draft", sender=CreateEmailCampaignRequestSender(email="news@example.org")
    )
    with pytest.raises(BadRequestError) as unsent:
        sdk.email_campaigns.email_export_recipients(draft.id, recipients_type="all")
    assert unsent.value.body == {"code": "invalid_parameter", "message": "Campaign is not sent yet"}


def test_statistics_and_exports_follow_events_recorded_after_a_first_read(
    sdk: Brevo, brevo_sandbox: BrevoHandle, control: httpx.Client
) -> None:
    """Statistics and the event order behind exports are kept between reads; an event added
    to the campaign afterwards shows in both."""
    assert brevo_sandbox.list_id is not None
    control.put("/activity", json={"rates": dict.fromkeys(("hard_bounce", "soft_bounce"), 0)})
    _audience(sdk, brevo_sandbox.list_id, 5)
    campaign_id = _send(sdk, brevo_sandbox.list_id)

    def bounced() -> list[str]:
        started = sdk.email_campaigns.email_export_recipients(
            campaign_id, recipients_type="hardBounces"
        )
        url = sdk.process.get_process(started.process_id).export_url or ""
        return [line.split(";")[1] for line in httpx.get(url).text.splitlines()[1:]]

    before = sdk.email_campaigns.get_email_campaign(campaign_id).statistics
    assert (before.global_stats.hard_bounces, before.campaign_stats[0].hard_bounces) == (0, 0)
    assert bounced() == []
    for who in ("r3@example.org", "r1@example.org"):
        body = {"type": "hard", "campaignId": campaign_id}
        assert control.post(f"/contacts/{who}/bounce", json=body).status_code == 200
        control.post("/clock", json={"advance": 5})
    after = sdk.email_campaigns.get_email_campaign(campaign_id).statistics
    assert (after.global_stats.hard_bounces, after.campaign_stats[0].hard_bounces) == (2, 2)
    listed = sdk.email_campaigns.get_email_campaigns(statistics="globalStats").campaigns or []
    [mine] = [c for c in listed if c.id == campaign_id]
    assert mine.statistics.global_stats.hard_bounces == 2
    assert bounced() == ["r3@example.org", "r1@example.org"]  # by time, not by contact
