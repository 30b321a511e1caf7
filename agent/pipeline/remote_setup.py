"""Which model a command uses: a local directory (or the embedded one) or a server by URL.

`--model` takes either; a URL can also come from `model_url` in `[tool.greenpatch]` (the flag
wins), and the model's name from `--model-name` or `model_name`. The key is read from the
environment (GREENPATCH_API_KEY, else the provider's usual variable), never from a flag.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from greenpatch.agent.config import Settings
from greenpatch.agent.errors import AgentError
from greenpatch.agent.pipeline.sites import rough_token_count
from greenpatch.model.remote import PROVIDER_KEYS, RemoteModel, Usage, is_url, key_from_env

# Requests in flight to the server at once, per process (a batch's tickets share them).
CONCURRENCY = 4
TIMEOUT = 120.0
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def remote_url(model: str | None, settings: Settings | None = None) -> str | None:
    """The server URL to use, if any: `--model URL`, else `model_url` unless `--model DIR`."""
    if model is not None:
        return model if is_url(model) else None
    return settings.model_url if settings is not None and settings.model_url else None


def key_for(url: str, from_flag: bool) -> str | None:
    """The key to send to `url`. A URL from a repository's config is untrusted (anyone can
    open a labelled issue on a repo whose pyproject names their own server): it gets the key
    only on loopback or a provider's own host; elsewhere the URL must come from the flag."""
    host = urlsplit(url).hostname or ""
    if not from_flag and host not in LOOPBACK and host not in PROVIDER_KEYS:
        return None
    return key_from_env(url, dict(os.environ))


def connect_remote(url: str, model_name: str | None, settings: Settings | None = None,
                   from_flag: bool = True, timeout: float = TIMEOUT) -> RemoteModel:  # fmt: skip
    """A RemoteModel, its model listed and its capabilities known (else exit 2, one line)."""
    name = model_name or (settings.model_name if settings is not None else "") or None
    remote = RemoteModel(url, name, key_for(url, from_flag), timeout=timeout,
                         concurrency=CONCURRENCY)  # fmt: skip
    try:
        return remote.connect()
    except BaseException:
        remote.close()
        raise


def check_model_name(model: str | None, model_name: str | None) -> None:
    if model_name is not None and model is not None and not is_url(model):
        raise AgentError("--model-name goes with --model http(s)://HOST/v1, not a directory")


def remote_infill(remote: RemoteModel, prefix: str, middle: str, suffix: str,
                  n: int) -> tuple[list[tuple[str, float | None]], Usage]:  # fmt: skip
    """`agent infill` on a server: up to `n` distinct fills, best first, with the server's
    score when it has the /fim/score extension (else None, in the server's order)."""
    usage = Usage()
    count = rough_token_count(middle)
    # A diffusion model we serve fills exactly max_tokens masks: several lengths, as in-process.
    lengths = sorted({count, count + 3, count + 8}) if remote.exact_spans else [2 * count + 8]
    texts: list[str] = []
    for length in lengths:
        texts += remote.fim(prefix, suffix, length, n + 1, usage)
    texts = [t for t in dict.fromkeys(texts) if t.strip() and t != middle]
    if remote.can_score and texts:
        scored = sorted(zip(texts, remote.score(prefix, suffix, texts, usage), strict=True),
                        key=lambda pair: -pair[1])  # fmt: skip
        return [(t, s) for t, s in scored][:n], usage
    return [(t, None) for t in texts][:n], usage
