"""Provider member ids that are only the address's hash are forgotten (set to NULL).

Revision ID: 0012_legacy_member_ids
Revises: 0011_member_status_count
Create Date: 2026-12-07

Written by hand. ``provider_member_id`` (in ``cb_member_status`` and ``cb_contact_state``) is
the provider's own id for a member, kept to recognise the member under a new address. Earlier
adapters stored the hash of the member's address there (the listmonk adapter until it stored
listmonk's subscriber id; the Mailchimp adapter until it stored ``contact_id``): the same
value as the bridge's own key for the row, which no provider's stable id can equal. Such a
value says nothing the key does not, and read as a provider id it would make the member look
like another one when the provider lists it under its real id. So it becomes NULL, "not known
yet", which the next read of the member or send to it fills in (push and pull store the id
the provider answers with). Downgrade leaves the rows as they are: NULL was valid before.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012_legacy_member_ids"
down_revision: str | None = "0011_member_status_count"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE cb_member_status SET provider_member_id = NULL WHERE provider_member_id = member_id"
    )
    op.execute(
        "UPDATE cb_contact_state SET provider_member_id = NULL "
        "WHERE provider_member_id = email_hash"
    )


def downgrade() -> None:
    pass  # NULL was a valid "not known yet" before this revision too
