"""config/models.yaml: the model tiers with their prices, the router's rules, budgets."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core import configfile

TIER_ORDER = ("rules", "small", "large")
ModelTier = Literal["small", "large"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelPrice(_Strict):
    """One model of a tier and what it costs, USD per million tokens."""

    name: str = Field(min_length=1)
    input_per_million: Decimal = Field(ge=0)
    output_per_million: Decimal = Field(ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        """The price of one call, in USD."""
        total = input_tokens * self.input_per_million + output_tokens * self.output_per_million
        return total / Decimal(1_000_000)


_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class Tier(_Strict):
    """A model tier: its models in fallback order, a timeout and an output cap, and
    optionally an endpoint of its own (otherwise OPENAI_BASE_URL / OPENAI_API_KEY)."""

    timeout_seconds: float = Field(gt=0, le=600)
    max_output_tokens: int = Field(gt=0, le=100_000)
    models: list[ModelPrice] = Field(min_length=1)
    # Any OpenAI-compatible endpoint (OpenAI, Azure OpenAI, vLLM, Ollama, llama-server).
    base_url: str | None = None
    # The NAME of the environment variable holding this endpoint's key: keys never in YAML.
    api_key_env: str | None = None

    @model_validator(mode="after")
    def _endpoint(self) -> Tier:
        if self.base_url is not None:
            parts = urlparse(self.base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"base_url {self.base_url!r} is not an http(s) URL")
        if self.api_key_env is not None and not _ENV_NAME.match(self.api_key_env):
            raise ValueError(
                f"api_key_env {self.api_key_env!r} must name an environment variable "
                "(A-Z, 0-9, _), not hold the key itself"
            )
        return self


class LargeWhen(_Strict):
    """Features of a job that send it straight to the large tier."""

    input_chars_over: int = 6000
    non_latin_share_over: float = Field(0.3, ge=0, le=1)
    attachments: bool = True
    keywords: list[str] = Field(default_factory=list)
    risk: list[Literal["read", "write", "irreversible"]] = Field(default_factory=list)


class Router(_Strict):
    """How the router picks and changes tiers."""

    start: dict[str, ModelTier] = Field(default_factory=dict)
    large_when: LargeWhen = LargeWhen()
    action_words: dict[str, list[str]] = Field(default_factory=dict)
    retry_up_below_confidence: float = Field(0.6, ge=0, le=1)
    # Workflows sent straight to the model tiers, past the deterministic rules tier (to
    # evaluate a model on work the rules would plan, or when the rules are not wanted).
    skip_rules: list[str] = Field(default_factory=list)
    repair_attempts: int = Field(2, ge=0, le=5)


class Cache(_Strict):
    """The response cache."""

    ttl_seconds: int = Field(86400, ge=0)


class Budgets(_Strict):
    """Spend per UTC day per workflow, USD (`default` for the workflows not named)."""

    daily_usd: dict[str, Decimal] = Field(default_factory=dict)

    def daily(self, workflow: str) -> Decimal | None:
        """The workflow's daily budget, or None when there is none."""
        return self.daily_usd.get(workflow, self.daily_usd.get("default"))


class SoftCheckModel(_Strict):
    """Which tier judges plans in the soft check (config/verifiers.yaml sets the threshold).

    Any tier named in `tiers`: `small` or `large`, or one only the judge uses (say `judge`,
    with its own base_url and api_key_env: a different model at a different endpoint than
    the planner's is what we recommend, so one compromised endpoint cannot do both)."""

    tier: str = Field(min_length=1)
    # Rules-tier plans are built from the very signals the deterministic scorer checks; a
    # model judging them adds cost, not assurance, unless this says otherwise.
    judge_rules_plans: bool = False


class ModelsConfig(_Strict):
    """The whole of config/models.yaml."""

    # `small` and `large` are the planner's (the router climbs them in TIER_ORDER); a tier of
    # any other name is used only where named (soft_check.tier).
    tiers: dict[str, Tier]
    router: Router = Router()
    cache: Cache = Cache()
    budgets: Budgets = Budgets()
    soft_check: SoftCheckModel | None = None

    @model_validator(mode="after")
    def _start_tiers_exist(self) -> ModelsConfig:
        for workflow, tier in self.router.start.items():
            if tier not in self.tiers:
                raise ValueError(f"router.start.{workflow}: no tier {tier!r} in tiers")
        if self.soft_check is not None and self.soft_check.tier not in self.tiers:
            raise ValueError(f"soft_check.tier: no tier {self.soft_check.tier!r} in tiers")
        return self

    def tiers_from(self, tier: str) -> list[ModelTier]:
        """The configured model tiers from `tier` upwards, cheapest first."""
        index = TIER_ORDER.index(tier)
        planner_tiers: tuple[ModelTier, ...] = ("small", "large")
        return [t for t in planner_tiers if t in TIER_ORDER[index:] and t in self.tiers]

    def price(self, model: str) -> ModelPrice | None:
        """The price entry of a model name, wherever it is configured."""
        for tier in self.tiers.values():
            for entry in tier.models:
                if entry.name == model:
                    return entry
        return None


def models_config() -> ModelsConfig:
    """config/models.yaml as it is now."""
    return configfile.current("models.yaml", ModelsConfig)
