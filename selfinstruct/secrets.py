"""The one redactor: every message, warning and file write of server text passes through it.

Two layers. The exact values of the credentials this process holds (OPENAI_API_KEY,
HF_TOKEN, keys given in a --base-url, any value passed to `register`) are replaced wherever
they appear, whatever their form; they are never legitimate teacher output, so completion
text is cleaned of them too (`redact_values`). Messages meant for people also lose anything
shaped like a credential (`redact`): bearer tokens, `api-key=...` pairs, URL
userinfo and provider key prefixes (sk-, gsk_, hf_, xai-...), which may belong to keys this
process never saw (a proxy echoing another client's headers).

Credentials in a base URL (`http://user:pass@host/v1`, `?api-key=...`) are taken out of it
by `strip_url_credentials`: the clean URL is what the config, config.json and every message
hold, and the backend gets the credentials back with `url_credentials`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"
# Shorter values are not treated as secrets: local servers take placeholders such as
# "EMPTY" or "none", and replacing such words in teacher text would corrupt the data.
MIN_SECRET = 6
# Environment variables whose values are credentials (OpenAI SDK, huggingface_hub, vLLM).
SECRET_ENV = (
    "OPENAI_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "VLLM_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "SELFINSTRUCT_JUDGE_API_KEY",  # the judge's own key (runner.JUDGE_API_KEY_ENV)
)
# Query parameter names that carry credentials (Azure's api-key, signed URLs, tokens).
_SECRET_PARAM = re.compile(r"(?i)key|token|secret|passw|auth|sig|credential|session")

_SHAPES = re.compile(
    r"(?i)"
    # Authorization header values: "Bearer abc", "Basic dXNlcjpwYXNz" (base64 with a digit,
    # a sign or a capital after a small letter, so that "Basic authentication" stays).
    r"(?P<scheme>\bbearer\s+|\bbasic\s+(?=(?-i:[A-Za-z0-9+/=]*(?:[a-z][A-Z]|[0-9+/=]))))"
    r"[A-Za-z0-9._~+/=-]{6,}"
    # name=value / "name": "value" pairs whose name says credential.
    r"|(?P<pair>\b[\w-]*(?:api[-_]?key|token|secret|password|passwd|authorization)"
    r"[\"']?\s*[:=]\s*[\"']?)(?!\[redacted\]|bearer\s|basic\s)[^\s\"',;&}]+"
    # URL userinfo: scheme://user:pass@host.
    r"|(?P<url>\b[a-z][a-z0-9+.-]*://)[^/\s@]+@"
    # Provider key prefixes: OpenAI sk-/sk-proj-, Groq gsk_, Hugging Face hf_, xAI xai-.
    r"|\b(?:sk|gsk|hf|xai|pk|rk)[-_][A-Za-z0-9_-]{12,}"
)

_lock = threading.Lock()
_registered: set[str] = set()


@dataclass(frozen=True)
class UrlCredentials:
    """What a base URL carried besides the endpoint: a key, basic auth, query credentials."""

    api_key: str | None = None
    basic: tuple[str, str] | None = None
    query: dict[str, str] = field(default_factory=dict)


_by_url: dict[str, UrlCredentials] = {}


def register(value: str | None) -> None:
    """Treat `value` as a secret from now on, wherever it appears."""
    if value and len(value) >= MIN_SECRET:
        with _lock:
            _registered.add(value)
            # Servers echo values percent-encoded as often as raw.
            if (encoded := quote(value, safe="")) != value:
                _registered.add(encoded)


def secret_values() -> list[str]:
    """Return the exact secret values known now, longest first (so none is half-replaced)."""
    values = {v for name in SECRET_ENV if len(v := os.environ.get(name, "")) >= MIN_SECRET}
    with _lock:
        values |= _registered
    return sorted(values, key=len, reverse=True)


def redact_values(text: str) -> str:
    """Replace the exact secret values this process holds; leave everything else as it is."""
    for value in secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact(text: str) -> str:
    """Replace secret values and anything shaped like a credential, for messages to people."""
    return _SHAPES.sub(_shape, redact_values(text))


class RedactFilter(logging.Filter):
    """Redact every log record before a handler writes it (warnings quote servers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message with its redacted text; keep the record."""
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def _shape(match: re.Match[str]) -> str:
    for group in ("scheme", "pair", "url"):
        if match.group(group):
            suffix = "@" if group == "url" else ""
            return match.group(group) + REDACTED + suffix
    return REDACTED


def strip_url_credentials(url: str) -> str:
    """Return `url` without userinfo or credential query parameters, remembering them.

    `http://TOKEN@host/v1` (or `http://:TOKEN@host/v1`) gives TOKEN as the API key, sent as
    a bearer token; `http://user:pass@host/v1` gives HTTP basic auth (for a proxy in front
    of the server); `?api-key=K` and other credential parameters are sent with every
    request. Raise ValueError for a URL that cannot be parsed.
    """
    parts = urlsplit(url)
    parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{redact(url)!r} is not an http(s) URL with a host")
    query = parse_qsl(parts.query, keep_blank_values=True)
    secret_query = {k: v for k, v in query if _SECRET_PARAM.search(k)}
    kept_query = [(k, v) for k, v in query if k not in secret_query]
    api_key = basic = None
    if parts.username is not None or parts.password is not None:
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        if user and password:
            basic = (user, password)
        else:
            api_key = user or password
        if not (user or password):
            raise ValueError(f"{redact(url)!r} has an empty user:password@ part")
    if not (api_key or basic or secret_query):
        return url
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, urlencode(kept_query), parts.fragment))
    for value in (api_key, *(basic or ()), *secret_query.values()):
        register(value)
    with _lock:
        _by_url[clean] = UrlCredentials(api_key, basic, secret_query)
    return clean


def url_credentials(url: str) -> UrlCredentials | None:
    """Return the credentials `strip_url_credentials` took out of the URL now called `url`."""
    with _lock:
        return _by_url.get(url)
