"""The provider: outbound HTTPS, the clock, the API key, the audience, merge fields."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from campaign_bridge.config import SyncConfig
from campaign_bridge.db import redact_url
from campaign_bridge.doctor._privacy import check_marketing_permissions
from campaign_bridge.doctor._result import CheckResult, CheckStatus, fail, ok, skip, warn
from campaign_bridge.errors import BridgeError
from campaign_bridge.features import unsupported
from campaign_bridge.providers._network import classify, proxy_for, tls_context
from campaign_bridge.providers.base import Audience, Capabilities, DoctorFinding, MergeFieldSpec

CLOCK_SKEW_WARN_SECONDS = 30
CLOCK_SKEW_FAIL_SECONDS = 300


async def probe_https(
    url: str, env: Mapping[str, str], *, ca_bundle: str | None = None
) -> tuple[CheckResult, datetime | None]:
    """Reach ``url`` and classify DNS, connection, proxy and TLS failures with their fixes."""
    name = "outbound HTTPS"
    host = urlsplit(url).hostname or url
    found = proxy_for(url, env)
    proxied = f" through proxy {redact_url(found[1])}" if found else ""
    try:
        verify = tls_context(ca_bundle)
        async with httpx.AsyncClient(timeout=10.0, trust_env=True, verify=verify) as client:
            response = await client.get(url.rstrip("/") + "/ping")
    except httpx.TransportError as exc:  # the adapters' own classification (providers/_network)
        fault = classify(exc, url, env=env, timeout=10.0)
        message, _, fix = fault.message.partition(". Fix: ")
        return fail(name, message, fix), None
    server_time = _parse_date_header(response.headers.get("date"))
    return ok(name, f"{host} reachable{proxied} (HTTP {response.status_code})"), server_time


def _parse_date_header(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def check_clock(server_time: datetime | None, now: datetime | None = None) -> CheckResult:
    name = "clock"
    if server_time is None:
        return skip(name, "the provider sent no Date header to compare with")
    local = now or datetime.now(UTC)
    skew = abs((local - server_time).total_seconds())
    if skew >= CLOCK_SKEW_FAIL_SECONDS:
        return fail(
            name,
            f"local clock is {skew:.0f} s away from the provider's",
            "enable time synchronisation (chrony / systemd-timesyncd / NTP)",
        )
    if skew >= CLOCK_SKEW_WARN_SECONDS:
        return warn(name, f"local clock is {skew:.0f} s away from the provider's", "enable NTP")
    return ok(name, f"within {skew:.0f} s of the provider's clock")


async def check_provider(
    sync_name: str, sync: SyncConfig, env: Mapping[str, str]
) -> tuple[list[CheckResult], Audience | None]:
    """Reach the provider, check the key, the audience and its fields; return the audience."""
    from campaign_bridge.providers import create_provider

    destination = sync.destination
    base = destination.api_root()
    results: list[CheckResult] = []
    ca_bundle = str(destination.ca_bundle) if destination.ca_bundle else None
    reach, server_time = await probe_https(base, env, ca_bundle=ca_bundle)
    results.append(
        CheckResult(f"{reach.name} [{sync_name}]", reach.status, reach.message, reach.fix)
    )
    if reach.status is CheckStatus.FAIL:
        return results, None
    results.append(check_clock(server_time))
    name = f"provider [{sync_name}]"
    provider = create_provider(destination)
    try:
        try:
            facts = await provider.check()
        except BridgeError as exc:
            results.append(
                fail(
                    name,
                    f"the provider rejected the credentials: {exc}",
                    destination.credential_fix(),
                )
            )
            return results, None
        account = facts.get("account_name") or facts.get("account_id") or "account"
        results.append(ok(name, f"credentials valid ({account})"))
        results.append(check_features(sync_name, sync, provider.capabilities))
        checked, audience = await _check_audience(sync_name, sync, provider.audience)
        results.extend(checked)
        if audience is not None:
            findings = await provider.doctor_checks(audience, double_opt_in=sync.double_opt_in)
            results.extend(_result(sync_name, finding) for finding in findings)
    finally:
        await provider.aclose()
    return results, audience


async def _check_audience(
    sync_name: str, sync: SyncConfig, fetch: Callable[[str], Awaitable[Audience]]
) -> tuple[list[CheckResult], Audience | None]:
    name = f"audience [{sync_name}]"
    list_id = sync.destination.list_id
    try:
        audience = await fetch(list_id)
    except BridgeError as exc:
        problem = f"audience '{list_id}' cannot be read: {exc}"
        fix = (
            f"correct destination.list_id: the id of the {sync.destination.provider} audience "
            "(list) the sync fills, as its web app or API shows it"
        )
        return [fail(name, problem, fix)], None
    results = [ok(name, f"audience '{audience.name}' ({list_id}) exists")]
    results.append(check_merge_fields(sync_name, sync, audience))
    results.append(check_marketing_permissions(sync_name, sync, audience))
    return results, audience


def _result(sync_name: str, finding: DoctorFinding) -> CheckResult:
    name = f"{finding.name} [{sync_name}]"
    if finding.status == "ok":
        return ok(name, finding.message)
    if finding.status == "warn":
        return warn(name, finding.message, finding.fix)
    return fail(name, finding.message, finding.fix)


def check_features(sync_name: str, sync: SyncConfig, capabilities: Capabilities) -> CheckResult:
    """The sync's settings the provider cannot honour (push refuses to start with any)."""
    name = f"provider features [{sync_name}]"
    provider = sync.destination.provider
    found = unsupported(sync, capabilities)
    if found:
        listed = "; ".join(f"{item.setting}: {provider} has no {item.feature}" for item in found)
        return fail(name, listed, f"remove these settings from sync {sync_name!r}")
    return ok(name, f"every setting of the sync is something {provider} supports")


def check_merge_fields(sync_name: str, sync: SyncConfig, audience: Audience) -> CheckResult:
    name = f"merge fields [{sync_name}]"
    by_tag: dict[str, MergeFieldSpec] = {spec.tag: spec for spec in audience.merge_fields}
    problems = [
        f"'{tag}' does not exist in the audience"
        for tag in sync.fields
        if tag not in by_tag and not audience.free_form_fields
    ]
    problems += [
        f"required field '{spec.tag}' ({spec.name}) is not mapped"
        for spec in audience.merge_fields
        if spec.required and spec.tag not in sync.fields and not spec.default_value
    ]
    if problems:
        known = ", ".join(sorted(by_tag)) or "none"
        return fail(
            name,
            "; ".join(problems),
            f"map every required field and use existing tags only (the audience has: {known}); "
            "or create the missing merge fields in the provider",
        )
    return ok(name, f"{len(sync.fields)} mapped field(s) exist; required fields covered")
