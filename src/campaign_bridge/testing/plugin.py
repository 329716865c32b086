"""The pytest plugin registered by campaign-bridge (entry point ``pytest11``).

Fixtures are defined in the provider modules and re-exported here, so one entry point serves
them all.
"""

from __future__ import annotations

from campaign_bridge.testing.brevo import brevo_app, brevo_config, brevo_server
from campaign_bridge.testing.listmonk import listmonk_app, listmonk_config, listmonk_server
from campaign_bridge.testing.mailchimp import (
    mailchimp_app,
    mailchimp_audiences,
    mailchimp_config,
    mailchimp_process,
    mailchimp_server,
)

__all__ = [
    "brevo_app",
    "brevo_config",
    "brevo_server",
    "listmonk_app",
    "listmonk_config",
    "listmonk_server",
    "mailchimp_app",
    "mailchimp_audiences",
    "mailchimp_config",
    "mailchimp_process",
    "mailchimp_server",
]
