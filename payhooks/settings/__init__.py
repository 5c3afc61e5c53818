"""Typed settings, read once from the environment at start-up (see ``core.Settings``)."""

from payhooks.settings.core import Settings, every_variable, section_classes
from payhooks.settings.provider import Intake, ProviderSettings
from payhooks.settings.reading import ConfigError, redact_url

__all__ = [
    "ConfigError",
    "Intake",
    "ProviderSettings",
    "Settings",
    "every_variable",
    "redact_url",
    "section_classes",
]
