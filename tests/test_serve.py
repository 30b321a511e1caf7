"""`agent serve`: OpenAI-compatible routes over the embedded model, dynamic batching, auth,
limits in OpenAI's error shape, the access log, graceful shutdown on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from greenpatch.agent.serve.app import Limits, create_app
from greenpatch.agent.serve.engine import Engine, Sampling
from greenpatch.model.checkpoint import load_model
from greenpatch.model.sampler import Canvas
from starlette.testclient import TestClient

KEY = "serve-test-key-51c2"
PROMPT = "def add(a, b):\n    return a "
SUFFIX = " b\n"


@pytest.fixture(scope="module")
def lm():
    return load_model()


@pytest.fixture
def client(lm):
    app = create_app(lambda: Engine(lm), "greenpatch-embedded", api_key=KEY,
                     limits=Limits(max_body_bytes=4096, max_n=4, max_tokens=32))  # fmt: skip
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as c:
        for _ in range(100):
            if c.get("/ready").status_code == 200:
                break
            time.sleep(0.05)
        yield c


def test_models_lists_capabilities_and_limits(client: TestClient) -> None:
    (entry,) = client.get("/v1/models").json()["data"]
    assert entry["id"] == "greenpatch-embedded" and entry["object"] == "model"
    assert set(entry["capabilities"]) == {"fim", "completions", "score"}  # chat: served, unlisted
    assert entry["max_tokens"] == 32 and entry["max_n"] == 4


def test_fim_completions_and_chat_answer_in_openai_shapes(client: TestClient) -> None:
    body = {"model": "greenpatch-embedded", "prompt": PROMPT, "suffix": SUFFIX,
            "max_tokens": 2, "n": 3, "stream": False}  # fmt: skip
    fim = client.post("/v1/fim/completions", json=body).json()
    assert fim["object"] == "text_completion" and 1 <= len(fim["choices"]) <= 3
    assert all(isinstance(c["text"], str) and c["finish_reason"] in ("stop", "length")
               for c in fim["choices"])  # fmt: skip
    assert len({c["text"] for c in fim["choices"]}) == len(fim["choices"])  # distinct
    assert fim["usage"]["prompt_tokens"] > 0
    done = client.post("/v1/completions", json={**body, "prompt": [PROMPT, "x = "]}).json()
    assert {c["index"] // 3 for c in done["choices"]} == {0, 1}  # choices of both prompts
    chat = client.post("/v1/chat/completions", json={
        "model": "greenpatch-embedded", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8})  # fmt: skip
    assert chat.json()["choices"][0]["message"]["role"] == "assistant"
    streamed = client.post("/v1/fim/completions", json={**body, "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.rstrip().endswith("data: [DONE]")


def test_score_extension_ranks_given_fills(client: TestClient, lm) -> None:
    from greenpatch.model.sampler import score_fills

    fills = ["+", "-", "**"]
    got = client.post("/v1/fim/score", json={"model": "greenpatch-embedded", "prompt": PROMPT,
                                             "suffix": SUFFIX, "fills": fills}).json()  # fmt: skip
    scores = [d["score"] for d in sorted(got["data"], key=lambda d: d["index"])]
    assert scores == pytest.approx(score_fills(lm, PROMPT, SUFFIX, fills, context=256), abs=1e-4)


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/fim/completions", {"prompt": "a", "n": 5}, 400, "n"),
        ("/v1/fim/completions", {"prompt": "a", "max_tokens": 33}, 400, "max_tokens"),
        ("/v1/fim/completions", {"prompt": 3}, 400, "prompt"),
        ("/v1/chat/completions", {"messages": "hi"}, 400, "messages"),
        ("/v1/fim/completions", {"model": "gpt-9", "prompt": "a"}, 404, "model"),
        ("/v1/fim/completions", {"prompt": "x" * 5000}, 413, None),
        ("/v1/fim/score", {"prompt": "a", "fills": "x"}, 400, "fills"),
    ],
)
def test_limits_and_bad_input_are_4xx_in_openai_error_shape(client, path, body, status,
                                                            param) -> None:  # fmt: skip
    answer = client.post(path, json=body)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param


def test_not_json_and_unknown_routes_are_errors_too(client: TestClient) -> None:
    bad = client.post("/v1/completions", content=b"{nope")
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    assert client.get("/v1/nothing").json()["error"]["message"].startswith("no such route")


def test_without_the_key_every_v1_route_is_401_and_health_is_open(client: TestClient) -> None:
    for key in (None, "wrong"):
        headers = {"Authorization": f"Bearer {key}" if key else ""}
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/fim/completions")):
            answer = client.request(method, path, headers=headers, json={"prompt": "a"})
            assert answer.status_code == 401
            assert answer.json()["error"]["type"] == "authentication_error"
    assert client.get("/health", headers={"Authorization": ""}).status_code == 200


def test_concurrent_requests_share_forward_passes(lm) -> None:
    batched, alone = Engine(lm, max_batch=64, window=0.05), Engine(lm, max_batch=1)
    try:
        for engine in (batched, alone):
            futures = [engine.infill(Canvas(PROMPT, SUFFIX, 2), Sampling(2, 0.8))
                       for _ in range(8)]  # fmt: skip
            assert all(f.result(timeout=120) for f in futures)
        assert batched.stats.largest_batch > 1 and batched.stats.passes < alone.stats.passes
        assert alone.stats.largest_batch == 1 and alone.stats.requests == 8
    finally:
        batched.close()
        alone.close()


def test_a_request_that_arrives_mid_decoding_joins_the_running_batch(lm) -> None:
    engine = Engine(lm, max_batch=64, window=0.0)
    try:
        # The long fill takes MAX_STEPS passes whatever the model's confidence, each over
        # 16 hot samples (they soon differ, so every pass runs 16 rows): time for the short
        # one to arrive while it decodes.
        long = engine.infill(Canvas(PROMPT, SUFFIX, 96), Sampling(16, 1.5))
        for _ in range(6000):
            if engine.stats.passes >= 1:
                break
            time.sleep(0.005)
        short = engine.infill(Canvas(PROMPT, SUFFIX, 1), Sampling(2, 0.0))
        assert short.result(timeout=120) and long.result(timeout=120)
        assert engine.stats.largest_batch == 2  # it did not wait for the long one to end
        assert engine.stats.requests == 2
    finally:
        engine.close()


@pytest.mark.slow
def test_serve_process_logs_without_prompt_or_key_and_stops_gracefully_on_sigterm() -> None:
    env = {**os.environ, "GREENPATCH_API_KEY": KEY}
    # With the context cache: its requests share span passes too.
    proc = subprocess.Popen([sys.executable, "-m", "greenpatch.agent",
                             "serve", "--port", "0", "--cache-every", "2"], env=env,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    try:
        first = proc.stderr.readline()
        assert first.startswith("serving greenpatch-embedded on http://127.0.0.1:")
        reader.start()
        base = first.split(" on ")[1].strip()
        root = base.removesuffix("/v1")
        for _ in range(600):
            if httpx.get(f"{root}/ready").status_code == 200:
                break
            time.sleep(0.1)
        assert httpx.get(f"{base}/models").status_code == 401
        secret_prompt = "def secret_prompt_marker(x):\n    return x "
        body = {"model": "greenpatch-embedded", "prompt": secret_prompt, "suffix": "\n",
                "max_tokens": 2, "n": 2}  # fmt: skip
        headers = {"Authorization": f"Bearer {KEY}"}
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(httpx.post, f"{base}/fim/completions", json=body,
                                   headers=headers, timeout=120) for _ in range(4)]  # fmt: skip
            for _ in range(600):  # all four are being answered
                if httpx.get(f"{root}/ready").json()["inflight"] == 4:
                    break
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)  # requests in flight still get their answers
            assert [f.result().status_code for f in futures] == [200] * 4
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=5)
    log = "".join(lines)
    access = [ln for ln in lines if "greenpatch.serve" in ln and '"' in ln]
    assert sum('"POST /v1/fim/completions" 200' in ln for ln in access) == 4
    assert any('"GET /v1/models" 401' in ln for ln in access)
    assert "secret_prompt_marker" not in log and KEY not in log
