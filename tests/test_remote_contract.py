"""The remote model backend against a stand-in server: our requests have the documented shapes
(Inception's FIM and chat, OpenAI's completions), capabilities are checked at start, and bad
replies give a retry or one clear error line with its exit code: never a traceback, never a
false green."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from greenpatch.agent.pipeline.remote_draft import Failure, RemoteDrafter, chat_prompt
from greenpatch.agent.pipeline.sites import sites_for_line
from greenpatch.model.remote import EXIT_MODEL_SERVER, EXIT_USAGE, RemoteError, RemoteModel, Usage

from tests.openai_standin import Reply, chat_reply, fim_reply, models_reply, standin

KEY = "sk-contract-7f3a9c"
ROOT = Path(__file__).resolve().parents[1]
SOURCE = "def total(prices):\n    s = 0\n    for p in prices:\n        s -= p\n    return s\n"
FIXED = "def total(prices):\n    s = 0\n    for p in prices:\n        s += p\n    return s\n"


def _connect(url: str, name: str | None = "m", **kw) -> RemoteModel:
    kw.setdefault("backoff", 0.01)
    return RemoteModel(url, name, KEY, **kw).connect()


def _good(method: str, path: str, body, count: int) -> Reply:
    if path == "/v1/models":
        return models_reply("m", "other")
    if path == "/v1/fim/completions":
        return fim_reply(["+=", "*="])
    return chat_reply([f"Here:\n```python\n{FIXED}```\n"])


def test_fim_and_chat_requests_have_the_documented_shapes() -> None:
    with standin(_good, key=KEY) as (url, server):
        remote = _connect(url)
        assert remote.fim_route == "/fim/completions"
        usage = Usage()
        assert remote.fim("def f():\n    s ", " p\n", 4, 3, usage) == ["+=", "*="]
        assert remote.complete_chat([{"role": "user", "content": "fix"}], 64, usage)
    assert server.errors == []
    fim = [s for s in server.seen if s.path == "/v1/fim/completions"][-1]
    assert fim.body["prompt"] == "def f():\n    s " and fim.body["suffix"] == " p\n"
    assert fim.body["max_tokens"] == 4 and fim.body["stream"] is False and fim.body["model"] == "m"
    assert all(s.headers.get("Authorization") == f"Bearer {KEY}" for s in server.seen)
    # usage adds up what the server reported
    assert usage.as_dict()["prompt_tokens"] == 110 and usage.requests == 2


def test_without_fim_the_openai_completions_route_with_suffix_is_used() -> None:
    def script(method, path, body, count):
        if path == "/v1/fim/completions":
            return Reply(404, {"error": {"message": "no such route"}})
        return _good(method, "/v1/fim/completions" if path == "/v1/completions" else path,
                     body, count)  # fmt: skip

    with standin(script) as (url, server):
        remote = RemoteModel(url, "m").connect()
        assert remote.fim_route == "/completions"
        assert remote.fim("a", "b", 2, 1, Usage()) == ["+=", "*="]
    assert server.errors == []
    assert server.seen[-1].body["suffix"] == "b"


def test_a_server_without_fim_drafts_by_chat_with_the_failure_in_the_prompt() -> None:
    def script(method, path, body, count):
        if path in ("/v1/fim/completions", "/v1/completions"):
            return Reply(404, {"error": {"message": "not found"}})
        return _good(method, path, body, count)

    test = "def test_total():\n    assert total([1]) == 1"
    failure = Failure("tests/test_t.py::test_total", test, "AssertionError: assert -1 == 1")
    with standin(script, key=KEY) as (url, server):
        remote = _connect(url)
        assert remote.fim_route is None and remote.chat
        drafter = RemoteDrafter(remote, [], [failure])
        assert drafter.stages == ("substitution", "edit", "widen", "sample")
        sites = sites_for_line("src/t.py", SOURCE, 4)
        drafts = drafter.stage({"src/t.py": SOURCE}, sites, "sample")
    assert [d.source for d in drafts] == [FIXED]
    assert drafts[0].origin == "chat" and drafts[0].fill == "+"
    prompt = next(s for s in server.seen if s.path == "/v1/chat/completions").body["messages"]
    user = prompt[-1]["content"]
    assert "def test_total():" in user and "AssertionError: assert -1 == 1" in user
    assert "s -= p" in user  # the localized function
    assert drafter.report()["usage"]["requests"] == 1
    assert server.errors == []


def test_chat_prompt_trims_long_errors_to_their_end() -> None:
    failure = Failure("t::x", "", "x" * 5000 + "the end")
    prompt = chat_prompt("m.py", "def f():\n    pass\n", [failure], "")
    assert "the end" in prompt and len(prompt) < 2500


@pytest.mark.parametrize(
    ("models", "name", "wanted"),
    [
        (["a", "b"], "c", "model 'c' is not served"),
        (["a", "b"], None, "serves 2 models (a, b): choose one with --model-name"),
    ],
)
def test_model_not_listed_is_exit_2(models, name, wanted) -> None:
    with standin(lambda *a: models_reply(*models)) as (url, _), pytest.raises(
        RemoteError
    ) as info:
        RemoteModel(url, name).connect()
    assert wanted in str(info.value) and info.value.code == EXIT_USAGE


def test_a_url_with_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(RemoteError) as info:
        RemoteModel("https://user:s3cret@host.example/v1", "m")
    assert "s3cret" not in str(info.value) and info.value.code == EXIT_USAGE


def test_unreachable_server_is_exit_2_at_once() -> None:
    began = time.monotonic()
    with pytest.raises(RemoteError) as info:
        RemoteModel("http://127.0.0.1:9/v1", "m", backoff=5).connect()
    assert "unreachable" in str(info.value) and info.value.code == EXIT_USAGE
    assert time.monotonic() - began < 5  # no backoff for a refused connection


def _after_models(bad: Reply, good_after: int | None = None):
    """Lists the model; FIM answers `bad` (the first `good_after` times, then well)."""

    def script(method, path, body, count):
        if path == "/v1/models":
            return models_reply("m")
        if path == "/v1/fim/completions" and body["max_tokens"] == 1:
            return fim_reply(["x"])  # the capability probe
        fim_count = count - 1  # the probe came first
        if good_after is None or fim_count < good_after:
            return bad
        return fim_reply(["ok"])

    return script


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Reply(200, b"<html>gateway</html>"), "not JSON"),
        (Reply(200, {"choices": []}), "no choices"),
        (Reply(200, {"id": "x"}), "no choices"),
        (Reply(200, fim_reply(["abc"]).body, cut_short=True), "connection broke off"),
        (Reply(500, {"error": {"message": "boom"}}), "HTTP 500: boom"),
        (Reply(503, b""), "HTTP 503"),
    ],
)
def test_bad_replies_are_retried_then_one_error(bad: Reply, message: str) -> None:
    with standin(_after_models(bad)) as (url, server):
        remote = RemoteModel(url, "m", retries=2, backoff=0.01).connect()
        with pytest.raises(RemoteError) as info:
            remote.fim("a", "b", 3, 1, Usage())
    assert message in str(info.value) and "after 3 attempts" in str(info.value)
    assert info.value.code == EXIT_MODEL_SERVER
    assert server.count("/v1/fim/completions") == 1 + 3
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "bad",
    [Reply(500, {"error": {"message": "boom"}}), Reply(200, b"not json"),
     Reply(200, {"choices": []})],
)
def test_a_transient_bad_reply_is_retried_and_then_succeeds(bad: Reply) -> None:
    with standin(_after_models(bad, good_after=1)) as (url, _):
        remote = RemoteModel(url, "m", retries=2, backoff=0.01).connect()
        usage = Usage()
        assert remote.fim("a", "b", 3, 1, usage) == ["ok"]
    assert usage.retries == 1


def test_429_waits_for_retry_after() -> None:
    bad = Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "1"})
    with standin(_after_models(bad, good_after=1)) as (url, _):
        remote = RemoteModel(url, "m", retries=2, backoff=0.01).connect()
        began = time.monotonic()
        assert remote.fim("a", "b", 3, 1, Usage()) == ["ok"]
    assert time.monotonic() - began >= 1.0


def test_401_is_not_retried_and_says_which_variable() -> None:
    with standin(_good, key="the-right-key") as (url, server), pytest.raises(RemoteError) as info:
        RemoteModel(url, "m", "wrong-key", backoff=0.01).connect()
    assert "refused the key (HTTP 401" in str(info.value)
    assert "GREENPATCH_API_KEY" in str(info.value)
    assert "wrong-key" not in str(info.value) and info.value.code == EXIT_USAGE
    assert server.count("/v1/models") == 1


def test_a_hang_times_out() -> None:
    with standin(_after_models(Reply(200, fim_reply(["x"]).body, hang=3))) as (url, _):
        remote = RemoteModel(url, "m", retries=1, backoff=0.01, timeout=0.5).connect()
        began = time.monotonic()
        with pytest.raises(RemoteError) as info:
            remote.fim("a", "b", 3, 1, Usage())
    assert "no answer within 0.5s" in str(info.value)
    assert time.monotonic() - began < 3


def test_the_concurrency_cap_holds() -> None:
    inflight, peak = [0], [0]

    def script(method, path, body, count):
        if path == "/v1/models":
            return models_reply("m")
        inflight[0] += 1
        peak[0] = max(peak[0], inflight[0])
        time.sleep(0.2)
        inflight[0] -= 1
        return fim_reply(["x"])

    from concurrent.futures import ThreadPoolExecutor

    with standin(script) as (url, _):
        remote = RemoteModel(url, "m", concurrency=2).connect()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: remote.fim("a", "b", 2, 1, Usage()), range(8)))
    assert peak[0] == 2


# -- through the command line: one line and an exit code, never a traceback --------------------

def _agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    full = {**os.environ, **(env or {})}
    full.pop("GREENPATCH_API_KEY", None)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "greenpatch.agent",
                           *args], capture_output=True, text=True,
                          timeout=120, env=full)  # fmt: skip


@pytest.mark.parametrize(
    ("bad", "code", "line"),
    [
        (Reply(500, {"error": {"message": "boom"}}), EXIT_MODEL_SERVER, "HTTP 500: boom"),
        (Reply(200, b"{not json"), EXIT_MODEL_SERVER, "not JSON"),
        (Reply(401, {"error": {"message": "expired"}}), EXIT_USAGE, "refused the key"),
    ],
)
def test_infill_on_a_bad_server_is_one_line_and_an_exit_code(tmp_path: Path, bad, code,
                                                              line) -> None:  # fmt: skip
    source = tmp_path / "t.py"
    source.write_text(SOURCE)
    with standin(_after_models(bad)) as (url, _):
        done = _agent("infill", str(source), "--lines", "4:4", "--model", url, "--model-name", "m")
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and line in lines[0]


def test_fix_with_a_failing_server_is_an_error_not_a_green(tmp_path: Path) -> None:
    repo = tmp_path / "stockroom"
    subprocess.run([sys.executable, str(ROOT / "examples" / "prepare.py"), "stockroom", str(repo)],
                   check=True, capture_output=True)  # fmt: skip
    ticket = ROOT / "examples" / "tickets" / "stockroom.md"
    out = tmp_path / "fix.json"

    def script(method, path, body, count):
        if path == "/v1/models":
            return models_reply("m")
        if path == "/v1/fim/completions" and body["max_tokens"] == 1:
            return fim_reply(["x"])
        return Reply(500, {"error": {"message": "overloaded"}})

    with standin(script, key=KEY) as (url, _):
        done = _agent("fix", str(ticket), "--repo", str(repo), "--model", url, "--model-name",
                      "m", "--drafter", "model-only", "--sandbox", "process", "--budget", "60",
                      "--json", str(out), "-q", env={"GREENPATCH_API_KEY": KEY})  # fmt: skip
    assert done.returncode == EXIT_MODEL_SERVER, done.stderr
    assert "Traceback" not in done.stderr and "overloaded" in done.stderr
    report = json.loads(out.read_text())
    assert report["status"] == "error" and report["commit"] is None
    assert "greenpatch/" not in subprocess.run(["git", "branch"], cwd=repo, capture_output=True,
                                                text=True).stdout  # fmt: skip
    assert KEY not in out.read_text() and KEY not in done.stderr + done.stdout


def test_a_repo_configured_url_gets_the_key_only_on_loopback_or_a_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from greenpatch.agent.pipeline.remote_setup import key_for

    monkeypatch.setenv("GREENPATCH_API_KEY", KEY)
    assert key_for("https://models.attacker.example/v1", from_flag=False) is None
    assert key_for("https://models.attacker.example/v1", from_flag=True) == KEY
    assert key_for("http://127.0.0.1:8000/v1", from_flag=False) == KEY
    monkeypatch.delenv("GREENPATCH_API_KEY")
    monkeypatch.setenv("INCEPTION_API_KEY", "inception-key")
    assert key_for("https://api.inceptionlabs.ai/v1", from_flag=False) == "inception-key"
