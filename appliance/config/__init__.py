"""Configuration: one TOML file validated into typed, frozen dataclasses."""

from .loader import DEFAULT_PATH, ENV_VAR, ConfigError, default_path, load, parse
from .schema import SERVICES, Config

__all__ = ["DEFAULT_PATH", "ENV_VAR", "SERVICES", "Config", "ConfigError", "default_path", "load", "parse"]
