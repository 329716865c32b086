"""Emulators of email providers, one sub-package per provider (``sandbox.mailchimp``)."""
