"""Docker specifics: a clear error without an engine, the local image, container hardening."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from greenpatch.sandboxes import Limits, SandboxError, Worker, WorkerSpec, get_backend
from greenpatch.sandboxes.docker_backend import LABEL

from tests.test_sandbox_helpers import use_backend

pytestmark = pytest.mark.docker
ECHO = "import sys\nfor line in sys.stdin:\n    print(line.strip(), flush=True)\n"


def echo_spec(tree: Path, **limits: object) -> WorkerSpec:
    return WorkerSpec([sys.executable, "-c", ECHO], tree, limits=Limits(**limits))


def talk(worker: Worker) -> bytes:
    worker.stdin.write(b"hi\n")
    worker.stdin.flush()
    return worker.stdout.readline()


def test_unreachable_engine_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="^Docker engine unreachable .*start dockerd"):
        get_backend("docker", base_url=f"unix://{tmp_path}/no-docker.sock")


def test_image_is_built_locally_when_absent(tmp_path: Path) -> None:
    use_backend("docker")  # skip (or fail under CI) without an engine
    image = f"greenpatch-worker-test:{uuid.uuid4().hex[:8]}"
    backend = get_backend("docker", image=image)
    try:
        built = backend.client.images.get(image)
        assert built.attrs["Size"] < 64 * 1024  # a tiny root: everything else is the host's
        with backend.start(echo_spec(tmp_path)) as worker:
            assert talk(worker) == b"hi\n"
    finally:
        backend.close()
        backend.client.images.remove(image, force=True)


def test_container_is_hardened(tmp_path: Path) -> None:
    backend = use_backend("docker")
    with backend.start(echo_spec(tmp_path, memory_mb=300, processes=50)) as worker:
        assert talk(worker) == b"hi\n"
        worker.container.reload()
        host = worker.container.attrs["HostConfig"]
        config = worker.container.attrs["Config"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == 300 * 1024 * 1024
    assert host["PidsLimit"] == 50
    assert "/tmp" in host["Tmpfs"]
    if os.geteuid() == 0:
        assert not config["User"].startswith("0:")  # root hands the worker a uid of its own
    # The worktree is a mount (its source must exist), the only writable one; the rest is ro.
    binds = {b.split(":")[0]: b.split(":")[-1] for b in host["Binds"]}
    [mount] = host["Mounts"]
    assert mount["Type"] == "bind" and mount["Source"] == mount["Target"] == str(tmp_path)
    assert not mount.get("ReadOnly")
    assert all(mode == "ro" for mode in binds.values())
    assert not any(Path.home().is_relative_to(p) for p in binds)


def test_restart_execs_into_a_prewarmed_container(tmp_path: Path) -> None:
    backend = use_backend("docker")
    spec = echo_spec(tmp_path)
    backend.prewarm(spec)
    ours = {c.id for c in backend.client.containers.list(filters={"label": LABEL})}
    with backend.start(spec) as worker:
        assert worker.container.id in ours
        assert talk(worker) == b"hi\n"
    # Stopped: its container is gone, and a fresh one is being prepared for the next start.
    gone = worker.container.id
    with backend.start(spec) as again:
        assert again.container.id != gone
        assert talk(again) == b"hi\n"
    assert gone not in {c.id for c in backend.client.containers.list(all=True)}


def test_stale_containers_of_dead_processes_are_removed() -> None:
    backend = use_backend("docker")
    stale = backend.client.containers.create(
        backend.image, ["sleep", "infinity"], labels={LABEL: "999999999:0"}
    )
    assert backend.remove_stale() >= 1
    assert stale.id not in {c.id for c in backend.client.containers.list(all=True)}


def test_a_container_removed_while_listing_stale_ones_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = use_backend("docker")
    client = backend.client
    racing = client.containers.create(backend.image, ["true"], labels={LABEL: "999999998:0"})
    listing = client.api.containers

    def listed_then_removed(*args: object, **kwargs: object) -> list[dict]:
        found = listing(*args, **kwargs)
        racing.remove(force=True)  # as another process's sweep would, after the listing
        return found

    monkeypatch.setattr(client.api, "containers", listed_then_removed)
    backend.remove_stale()
    monkeypatch.undo()
    assert racing.id not in {c.id for c in client.containers.list(all=True)}
