"""Test helpers for projects that build on an email provider's API (a pytest plugin).

Installing campaign-bridge registers the pytest plugin ``campaign_bridge.testing.plugin``
(``pytest11`` entry point): its fixtures are available in any project's tests without a
``conftest.py``. The Mailchimp fixtures live in ``campaign_bridge.testing.mailchimp``:

- ``mailchimp_app``: an in-process sandbox (``httpx.ASGITransport``, no socket; fastest);
- ``mailchimp_server``: the sandbox on a real socket in a thread of the test process;
- ``mailchimp_process``: ``campaign-bridge sandbox serve`` in its own process, for clients
  that run as subprocesses (Singer taps, dlt pipelines, other languages);
- ``mailchimp_audiences``: override it to seed audiences and members into each of them.

Each yields an object with ``base_url``, ``api_key``, ``list_id`` and a ``control``
(``SandboxControl``: seed, faults, latency, clock, state, reset).

The Brevo fixtures (``campaign_bridge.testing.brevo``: ``brevo_app``, ``brevo_server``,
``brevo_config``) and the listmonk ones (``campaign_bridge.testing.listmonk``: ``listmonk_app``,
``listmonk_server``, ``listmonk_config``) work the same way.
"""

from __future__ import annotations

from campaign_bridge.testing._control import SandboxControl, SandboxControlError
from campaign_bridge.testing.brevo import InProcessBrevo, ServedBrevo
from campaign_bridge.testing.listmonk import InProcessListmonk, ServedListmonk
from campaign_bridge.testing.mailchimp import (
    InProcessSandbox,
    MailchimpControl,
    ServedSandbox,
    start_process,
)

__all__ = [
    "InProcessBrevo",
    "InProcessListmonk",
    "InProcessSandbox",
    "MailchimpControl",
    "SandboxControl",
    "SandboxControlError",
    "ServedBrevo",
    "ServedListmonk",
    "ServedSandbox",
    "start_process",
]
