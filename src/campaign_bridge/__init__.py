"""campaign-bridge: keep an email-campaign provider in step with your own SQL database."""

__version__ = "0.1.0"

__all__ = ["__version__"]
