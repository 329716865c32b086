"""Mapping rows to members: validation, normalisation, hashing and tag deltas (no I/O)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import pytest

from campaign_bridge.config import SyncConfig
from campaign_bridge.errors import ConfigurationError, RecordError
from campaign_bridge.mapping import (
    MappingPlan,
    compile_plan,
    consent_of,
    email_hash,
    map_row,
    normalize_email,
    required_columns,
    tag_delta,
)
from campaign_bridge.providers.base import Audience, MergeFieldSpec

AUDIENCE = Audience(
    id="list1",
    name="Test",
    merge_fields=(
        MergeFieldSpec("FNAME", "First name", "text"),
        MergeFieldSpec("LNAME", "Last name", "text", required=True),
        MergeFieldSpec("AGE", "Age", "number"),
        MergeFieldSpec("JOINED", "Joined", "date", date_format="MM/DD/YYYY"),
        MergeFieldSpec("BDAY", "Birthday", "birthday", date_format="DD/MM"),
        MergeFieldSpec("ADDRESS", "Address", "address"),
        MergeFieldSpec("PHONE", "Phone", "phone"),
        MergeFieldSpec("SITE", "Site", "url"),
        MergeFieldSpec("PLAN", "Plan", "dropdown", choices=("free", "pro")),
    ),
    interest_ids=frozenset({"int1"}),
    marketing_permission_ids=frozenset({"perm1"}),
)
FIELDS = {
    "FNAME": "first_name",
    "LNAME": "last_name",
    "AGE": "age",
    "JOINED": "joined",
    "BDAY": "bday",
    "ADDRESS": "address",
    "PHONE": "phone",
    "SITE": "site",
    "PLAN": "plan",
}


def sync_config(**overrides: object) -> SyncConfig:
    data: dict[str, object] = {
        "source": {"url": "sqlite:///x.db", "table": "contacts", "consent_column": "consent"},
        "destination": {"api_key": "0" * 32 + "-us1", "list_id": "list1"},
        "fields": FIELDS,
        "tags": {"VIP": "is_vip"},
        "tags_column": "tag_list",
        "interests": {"int1": "likes_news"},
        "marketing_permissions": {"perm1": "gdpr_email"},
        "language_column": "lang",
    }
    data.update(overrides)
    return SyncConfig.model_validate(data)


@pytest.fixture
def plan() -> MappingPlan:
    return compile_plan(sync_config(), AUDIENCE, sync_name="crm")


def row(**values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": 7,
        "email": "  Ada@Example.ORG ",
        "consent": "yes",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "age": "36",
        "joined": dt.date(2024, 3, 1),
        "bday": "1815-12-10",
        "address": '{"addr1": "1 Main St", "city": "London", "state": "LDN", "zip": "12345"}',
        "phone": "+44 20 7946 0958",
        "site": "https://ada.example.org",
        "plan": "pro",
        "is_vip": 1,
        "tag_list": "b, a ,,",
        "likes_news": True,
        "gdpr_email": "false",
        "lang": "en",
    }
    base.update(values)
    return base


def test_a_valid_row_is_normalised(plan: MappingPlan) -> None:
    contact = map_row(plan, row())
    assert contact.key == "7"
    assert contact.email == "Ada@Example.ORG"
    assert contact.email_hash == hashlib.md5(b"ada@example.org").hexdigest()
    assert contact.consent is True
    assert contact.merge_fields == {
        "FNAME": "Ada",
        "LNAME": "Lovelace",
        "AGE": 36,
        "JOINED": "03/01/2024",
        "BDAY": "10/12",
        "ADDRESS": {"addr1": "1 Main St", "city": "London", "state": "LDN", "zip": "12345"},
        "PHONE": "+44 20 7946 0958",
        "SITE": "https://ada.example.org",
        "PLAN": "pro",
    }
    assert contact.tags == {"VIP", "a", "b"}
    assert contact.interests == {"int1": True}
    assert contact.marketing_permissions == {"perm1": False}
    assert contact.language == "en"


def test_content_hash_is_stable_and_order_independent(plan: MappingPlan) -> None:
    first = map_row(plan, row())
    reordered = dict(reversed(list(row(tag_list="a,b").items())))
    assert map_row(plan, reordered).content_hash == first.content_hash
    assert map_row(plan, row(first_name="Ada ")).content_hash == first.content_hash
    assert map_row(plan, row(first_name="Adah")).content_hash != first.content_hash
    assert map_row(plan, row(consent="no")).content_hash != first.content_hash
    assert map_row(plan, row(tag_list="a")).content_hash != first.content_hash


@pytest.mark.parametrize(("value", "consent"), [("yes", True), ("no", False), (None, None)])
def test_content_hash_records_the_consent(
    plan: MappingPlan, value: object, consent: object
) -> None:
    contact = map_row(plan, row(consent=value))
    assert consent_of(contact.content_hash) is consent
    assert consent_of(None) is None


@pytest.mark.parametrize(
    "email",
    [
        "",
        "   ",
        None,
        42,
        "plain",
        "a@b",
        "a@@b.org",
        "a b@c.org",
        "a@-x.org",
        ".a@b.org",
        "a..b@c.org",
        "a@b.c0m",
        "x" * 65 + "@b.org",
        "a@" + "b" * 250 + ".org",
    ],
)
def test_invalid_email_is_rejected(plan: MappingPlan, email: object) -> None:
    with pytest.raises(RecordError) as caught:
        map_row(plan, row(email=email))
    assert caught.value.reason_code == "invalid_email"


@pytest.mark.parametrize("email", ["a@b.co", "first.last+tag@sub.example.com", "o'neil@x.ie"])
def test_valid_email_is_accepted(email: str) -> None:
    assert normalize_email(email) == email


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("last_name", None, "missing_required_field"),
        ("last_name", "  ", "missing_required_field"),
        ("age", "thirty", "invalid_type"),
        ("age", True, "invalid_type"),
        ("age", "nan", "invalid_type"),
        ("joined", "yesterday", "invalid_type"),
        ("bday", "31/02", "invalid_type"),
        ("address", "1 Main St", "invalid_type"),
        ("address", {"addr1": "x", "city": "y"}, "invalid_type"),
        ("phone", "call me", "invalid_type"),
        ("site", "ftp://x", "invalid_type"),
        ("plan", "gold", "invalid_choice"),
        ("first_name", "x" * 256, "value_too_long"),
    ],
)
def test_bad_values_are_rejected_with_a_reason(
    plan: MappingPlan, column: str, value: object, reason: str
) -> None:
    with pytest.raises(RecordError) as caught:
        map_row(plan, row(**{column: value}))
    assert caught.value.reason_code == reason
    assert "Lovelace" not in caught.value.message  # no data echoed back


def test_every_bad_field_is_named_in_one_rejection(plan: MappingPlan) -> None:
    with pytest.raises(RecordError) as caught:
        map_row(plan, row(age="x", plan="gold"))
    assert "AGE" in caught.value.message
    assert "PLAN" in caught.value.message


def test_optional_empty_values_clear_the_field(plan: MappingPlan) -> None:
    contact = map_row(plan, row(first_name=None, address=None, likes_news=None, lang=None))
    assert contact.merge_fields["FNAME"] == ""
    assert contact.merge_fields["ADDRESS"] == ""
    assert "int1" not in contact.interests  # NULL leaves the provider's value alone
    assert contact.language is None


def test_numbers_keep_their_kind(plan: MappingPlan) -> None:
    assert map_row(plan, row(age="2.5")).merge_fields["AGE"] == 2.5
    assert map_row(plan, row(age=3.0)).merge_fields["AGE"] == 3


def test_text_at_the_limit_is_accepted(plan: MappingPlan) -> None:
    assert map_row(plan, row(first_name="é" * 255)).merge_fields["FNAME"] == "é" * 255


def test_every_configuration_problem_is_reported_at_once() -> None:
    config = sync_config(
        fields={"FNAME": "first_name", "NOPE": "x", "ALSO": "y"},
        interests={"missing": "c"},
        marketing_permissions={"gone": "d"},
    )
    with pytest.raises(ConfigurationError) as caught:
        compile_plan(config, AUDIENCE, sync_name="crm")
    locations = [p.location for p in caught.value.problems]
    assert "syncs.crm.fields.NOPE" in locations
    assert "syncs.crm.fields.ALSO" in locations
    assert "syncs.crm.interests.missing" in locations
    assert "syncs.crm.marketing_permissions.gone" in locations
    assert any("LNAME" in p.problem for p in caught.value.problems)  # required, unmapped
    assert caught.value.exit_code == 2


def test_permissions_an_audience_does_not_show_are_a_warning_not_a_refusal() -> None:
    """Mailchimp lists an audience's permission ids only on its members: on an audience that
    shows none the mapping cannot be checked, and the run goes on saying so (as doctor does)."""
    empty = dataclasses.replace(AUDIENCE, marketing_permission_ids=frozenset())
    plan = compile_plan(sync_config(), empty, sync_name="crm")
    assert plan.marketing_permissions == (("perm1", "gdpr_email"),)
    assert len(plan.warnings) == 1
    assert "1 marketing permission(s) mapped" in plan.warnings[0]
    assert "doctor" in plan.warnings[0]
    assert compile_plan(sync_config(), AUDIENCE).warnings == ()  # shown and mapped: checked
    with pytest.raises(ConfigurationError, match="does not exist"):  # shown, not mapped
        compile_plan(sync_config(marketing_permissions={"gone": "d"}), AUDIENCE)


def test_merge_tags_match_case_insensitively() -> None:
    plan = compile_plan(sync_config(fields={**FIELDS, "lname": "last_name"}), AUDIENCE)
    assert [tag for tag, _, _ in plan.fields].count("LNAME") == 2


def test_required_columns_lists_every_column_once(plan: MappingPlan) -> None:
    columns = required_columns(plan)
    assert columns[:2] == ["id", "email"]
    assert len(columns) == len(set(columns))
    assert {"consent", "is_vip", "tag_list", "likes_news", "gdpr_email", "lang"} <= set(columns)


@pytest.mark.parametrize(
    ("desired", "before", "add", "remove"),
    [
        ({"a", "b"}, None, ("a", "b"), ()),
        ({"a", "b"}, ["a"], ("b",), ()),
        ({"a"}, ["a", "b"], (), ("b",)),
        (set(), ["a"], (), ("a",)),
        ({"a"}, ["a"], (), ()),
    ],
)
def test_tag_delta_touches_only_managed_tags(
    desired: set[str], before: list[str] | None, add: tuple[str, ...], remove: tuple[str, ...]
) -> None:
    assert tag_delta(frozenset(desired), before) == (add, remove)


def test_email_hash_is_the_subscriber_hash() -> None:
    assert email_hash(" Bob@X.org ") == hashlib.md5(b"bob@x.org").hexdigest()


def test_free_form_fields_take_any_name_and_keep_json_values() -> None:
    """listmonk's attribs: no schema, so a mapped field the audience does not list is sent as
    the source's value (numbers stay numbers; dates and bytes become text)."""
    audience = Audience(
        id="1",
        name="L",
        merge_fields=(MergeFieldSpec("name", "Name", "text"),),
        free_form_fields=True,
    )
    config = sync_config(
        fields={"name": "first_name", "score": "age", "joined": "joined", "raw": "nick"},
        interests={},
        marketing_permissions={},
    )
    plan = compile_plan(config, audience)
    contact = map_row(plan, row(age=36, nick=b"ada", joined=dt.date(2024, 3, 1)))
    assert not isinstance(contact, RecordError)
    assert contact.merge_fields == {
        "name": "Ada",
        "score": 36,
        "joined": "2024-03-01",
        "raw": "ada",
    }
    with pytest.raises(ConfigurationError, match="does not exist"):
        compile_plan(config, AUDIENCE)  # a fixed schema still refuses unknown fields
