"""The `docker_image` setting is the image the docker workers run in (it was accepted and never
used: every container ran the default image)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from greenpatch.agent.config import load_settings, sandbox_options
from greenpatch.runner.pool import Pool

from tests.conftest import make_repo
from tests.test_sandbox_helpers import use_backend


@pytest.mark.docker
def test_the_docker_image_setting_reaches_the_workers(tmp_path: Path, monkeypatch) -> None:
    engine = use_backend("docker")  # skip (or fail under CI) without an engine
    image = f"greenpatch-worker-test:{uuid.uuid4().hex[:8]}"
    # The user's own config chooses the image; the repository's may not (it is the root).
    config = tmp_path / "config"
    (config / "greenpatch").mkdir(parents=True)
    (config / "greenpatch" / "config.toml").write_text(f'docker_image = "{image}"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    repo = make_repo(tmp_path / "repo", {
        "pyproject.toml": '[tool.greenpatch]\ndocker_image = "attacker:chosen"\n',
        "tests/test_a.py": "def test_a():\n    assert True\n",
    })  # fmt: skip
    warned: list[str] = []
    settings = load_settings(repo, warn=warned.append, sandbox="docker")
    assert settings.docker_image == image and "cannot choose" in warned[0]
    try:
        with Pool(repo, sys.executable, "docker", workers=1,
                  backend_options=sandbox_options(settings)) as pool:  # fmt: skip
            assert pool.backend.image == image
            ran = [c.image.tags for c in engine.client.containers.list(
                filters={"ancestor": image})]  # fmt: skip
            assert ran and all(image in tags for tags in ran)
    finally:
        engine.client.images.remove(image, force=True)
