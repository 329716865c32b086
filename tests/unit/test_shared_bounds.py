"""Small shared pieces of doctor on many syncs: one TLS context, one set of defaults."""

from __future__ import annotations

from pathlib import Path

import certifi
import pytest

from campaign_bridge.cli import doctor as doctor_cli
from campaign_bridge.doctor import _syncs
from campaign_bridge.providers._network import tls_context


def test_the_tls_context_is_built_once_and_follows_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tls_context()
    assert tls_context() is first  # loading a CA bundle costs ~0.1 s of CPU: once
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    assert tls_context() is not first
    assert tls_context(str(bundle)) is tls_context(str(bundle))


def test_the_cli_shows_the_defaults_doctor_uses() -> None:
    assert doctor_cli.DEFAULT_CONCURRENCY == _syncs.DEFAULT_CONCURRENCY
    assert doctor_cli.DEFAULT_TIMEOUT == _syncs.DEFAULT_TIMEOUT
