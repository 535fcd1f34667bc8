"""How Google Drive sources and weights are fetched: the `drive` section of the config."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tuneflow.sources import normalize_api_endpoint

# Prefect block names: lowercase letters, digits and dashes.
BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")


class DriveSettings(BaseModel):
    """How Google Drive sources and weights (drive://ID or share links) are fetched: auth, timeouts, retries."""

    model_config = ConfigDict(extra="forbid")

    key_file: Path | None = Field(
        None,
        description="Service-account JSON key file. Unset: the key_secret_block, else the file named by "
        "TUNEFLOW_DRIVE_KEY_FILE, else GOOGLE_APPLICATION_CREDENTIALS. Share the Drive file with the account's email.",
    )
    key_secret_block: str | None = Field(
        None,
        description="Name of a Prefect Secret block holding the service-account key's JSON (instead of a key file).",
    )
    api_endpoint: str | None = Field(
        None,
        description="Drive API base URL ending in /drive/v2/, only for a local Drive emulator (tests, benchmark); "
        "unset means Google's.",
    )
    http_timeout_s: float = Field(
        60.0,
        gt=0,
        le=600,
        description="Seconds a Drive request may stay silent before it counts as failed and is retried "
        "(without a timeout a stalled connection would hang the run).",
    )
    chunk_mib: int = Field(
        64,
        ge=1,
        le=1024,
        description="Size of each ranged download request in MiB: how often progress is reported and the most a "
        "retry asks for again. Memory stays 4 MiB of buffers whatever it is.",
    )
    max_retries: int = Field(
        5,
        ge=0,
        le=20,
        description="Retries of a rate-limited (429/403 rate limit), failed (5xx) or dropped Drive request, with "
        "exponential backoff. Not found and permission errors are never retried.",
    )
    retry_base_delay_s: float = Field(
        0.5,
        ge=0,
        le=60,
        description="Wait before the first retry; each further retry waits 1.618 times longer, at most 20 s.",
    )

    @field_validator("key_file")
    @classmethod
    def _key_file_exists(cls, key_file: Path | None) -> Path | None:
        if key_file is None:
            return None
        path = key_file.expanduser()
        if not path.is_file():
            raise ValueError(
                f"key_file {str(key_file)!r} is not a file; give the path of the service-account JSON key "
                "(or use key_secret_block, or set TUNEFLOW_DRIVE_KEY_FILE)"
            )
        return path.resolve()

    @field_validator("key_secret_block")
    @classmethod
    def _block_name(cls, name: str | None) -> str | None:
        if name is None or not name.strip():
            return None
        if not BLOCK_NAME.fullmatch(name.strip()):
            raise ValueError(
                f"key_secret_block {name!r} is not a Prefect block name (lowercase letters, digits and dashes, "
                "e.g. 'drive-service-account')"
            )
        return name.strip()

    @field_validator("api_endpoint")
    @classmethod
    def _drive_v2_endpoint(cls, endpoint: str | None) -> str | None:
        return normalize_api_endpoint(endpoint)

    @model_validator(mode="after")
    def _one_key_source(self) -> DriveSettings:
        if self.key_file is not None and self.key_secret_block is not None:
            raise ValueError("give either key_file or key_secret_block, not both")
        return self
