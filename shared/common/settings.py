"""One settings object, read once in bootstrap/main (DESIGN section 7)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("repo-pilot", appauthor=False))


ENV_FILE_VARIABLE = "REPO_PILOT_ENV_FILE"


class EnvFileError(ValueError):
    """The `.env` file the user named does not exist or is not a file."""


def user_env_files() -> tuple[Path, ...]:
    """The `.env` files a process reads, lowest precedence first: the user config dir's, the one
    under REPO_PILOT_HOME, then the file named by REPO_PILOT_ENV_FILE (`--env-file`).

    Never `.env` in the current directory: that is often the target repository, and a file
    there could point the user's API key at its own endpoint or lower the merge threshold.
    """
    files = [Path(platformdirs.user_config_dir("repo-pilot", appauthor=False)) / ".env"]
    home = os.environ.get("REPO_PILOT_HOME")
    files.append((Path(home).expanduser() if home else default_home()) / ".env")
    named = os.environ.get(ENV_FILE_VARIABLE)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise EnvFileError(f"{ENV_FILE_VARIABLE}/--env-file names {path}, which is not a file")
        files.append(path)
    return tuple(files)


class Settings(BaseSettings):
    """Environment (and the user's `.env` files, see `user_env_files`) configuration for every process."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    def __init__(self, **values):
        values.setdefault("_env_file", user_env_files())
        super().__init__(**values)
        from shared.common.redaction import register_secrets

        register_secrets([self.openai_api_key, self.github_token, self.api_token, self.database_url, self.nats_url])

    openai_api_key: str | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, alias="OPENAI_BASE_URL")
    openai_model: str = Field(default="gpt-4.1", alias="OPENAI_MODEL")
    nats_url: str | None = Field(default=None, alias="NATS_URL")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    auto_merge_threshold: float = Field(default=7.0, alias="AUTO_MERGE_THRESHOLD")
    target_repo_path: str | None = Field(default=None, alias="TARGET_REPO_PATH")
    api_token: str | None = Field(default=None, alias="REPO_PILOT_API_TOKEN")
    # The gateway: local repository paths, URLs of local/private hosts, and whether a cluster
    # (`repo-pilot up`, or the services) runs what it appends instead of the gateway itself.
    gateway_local_repos: bool = Field(default=False, alias="REPO_PILOT_GATEWAY_LOCAL_REPOS")
    gateway_private_hosts: bool = Field(default=False, alias="REPO_PILOT_GATEWAY_PRIVATE_HOSTS")
    gateway_cluster: bool = Field(default=False, alias="REPO_PILOT_GATEWAY_CLUSTER")
    otel_endpoint: str | None = Field(default=None, alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    # Not called `home`: with populate_by_name the field name is matched against the environment
    # too, and a field `home` would read $HOME and put servers, mirrors and logs straight into ~.
    repo_pilot_home: Path = Field(default_factory=default_home, alias="REPO_PILOT_HOME")
    github_token: str | None = Field(default=None, alias="GITHUB_TOKEN")
    # The isolated env of tools Repo Pilot runs but never imports (codemodder, semgrep); unset: the
    # user cache dir (one install per machine, not per data directory).
    tools_home_dir: Path | None = Field(default=None, alias="REPO_PILOT_TOOLS_HOME")

    # Bus naming; tests give each test its own stream and subject prefix.
    stream_name: str = Field(default="PILOT", alias="REPO_PILOT_STREAM")
    subject_prefix: str = Field(default="pilot", alias="REPO_PILOT_SUBJECT_PREFIX")
    db_schema: str = Field(default="public", alias="REPO_PILOT_DB_SCHEMA")

    # Bound on one stored event (encoded); keep it under the NATS server's max_payload (1 MiB).
    max_event_bytes: int = Field(default=900_000, alias="REPO_PILOT_MAX_EVENT_BYTES")

    # The sweeper ends a run whose stream has recorded nothing for this long (PipelineFailed).
    # Above the longest legitimate silence: a test step runs up to six 600 s pytest sessions.
    stall_after_seconds: float = Field(default=7200.0, alias="REPO_PILOT_STALL_AFTER")

    # How the local sandbox confines tests (shared/adapters/confine.py): auto = the strongest that works.
    isolation: Literal["auto", "bwrap", "mountns", "unshare", "none"] = Field(default="auto", alias="REPO_PILOT_ISOLATION")

    # Test steps one tester replica runs at once (a slow repository must not block the others).
    tester_concurrency: int = Field(default=3, ge=1, alias="REPO_PILOT_TESTER_CONCURRENCY")

    max_deliver: int = Field(default=5, alias="REPO_PILOT_MAX_DELIVER")
    ack_wait_seconds: float = Field(default=60.0, alias="REPO_PILOT_ACK_WAIT")

    # Per-run model budget.
    run_token_budget: int = Field(default=2_000_000, alias="REPO_PILOT_TOKEN_BUDGET")
    run_cost_budget_usd: float = Field(default=5.0, alias="REPO_PILOT_COST_BUDGET")

    # The model endpoint: how to ask for JSON (auto = detect, then fall back on HTTP 400), how
    # many requests at once (unset = 8 for OpenAI, 2 for a local server, 4 otherwise), answer cap.
    llm_structured: Literal["auto", "json_schema", "tools", "guided", "ollama_format", "json_object", "plain"] = (
        Field(default="auto", alias="REPO_PILOT_LLM_STRUCTURED")
    )
    llm_concurrency: int | None = Field(default=None, alias="REPO_PILOT_LLM_CONCURRENCY")
    llm_answer_tokens: int = Field(default=16_384, alias="REPO_PILOT_LLM_ANSWER_TOKENS")

    @property
    def default_engine(self) -> str:
        """`llm` when a model endpoint is configured, else the offline `rules` engine."""
        return "llm" if (self.openai_api_key or self.openai_base_url) else "rules"

    @property
    def home(self) -> Path:
        """The data directory: REPO_PILOT_HOME, else the per-user data dir (never $HOME itself)."""
        return self.repo_pilot_home

    @property
    def tools_home(self) -> Path:
        """Where the codemod tools env lives: once per user and machine (the user cache dir), shared
        by every data directory, since installing it takes minutes; REPO_PILOT_TOOLS_HOME overrides."""
        return self.tools_home_dir or Path(platformdirs.user_cache_dir("repo-pilot")) / "tools"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def mirrors_dir(self) -> Path:
        return self.home / "mirrors"

    @property
    def worktrees_dir(self) -> Path:
        return self.home / "worktrees"
