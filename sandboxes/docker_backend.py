"""`docker`: one long-lived container per worker, the worker exec'd into it.

The image is a tiny root (empty mount points and the /bin, /lib... links) imported locally under
the configured name when absent; nothing is ever pulled. Everything the worker runs comes from the
host, bind-mounted read-only at the same paths: /usr, a few /etc files, the interpreter's prefixes
and site-packages, `spec.readonly`; the worktree is bind-mounted read-write at its host path.
Containers run with no network, a read-only root, tmpfs /tmp (also HOME), memory and pids limits,
all capabilities dropped and no-new-privileges; rlimits (CPU, file size, address space) are set
inside by `prlimit`, as in the bwrap backend.

When a worker stops, its container is removed and a fresh one for the same spec is started in the
background, so restarting a worker (after a timeout or a crash) costs one exec.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import socket
import struct
import tarfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from greenpatch.sandboxes import hostfs, rlimits
from greenpatch.sandboxes.base import Backend, SandboxError, Worker, WorkerSpec
from greenpatch.sandboxes.environment import worker_env
from greenpatch.sandboxes.identity import UidPool
from greenpatch.sandboxes.interpreter import minimal_roots, python_paths
from greenpatch.sandboxes.streams import Reader, StreamWorker
from greenpatch.sandboxes.worktree import process_start_time

DEFAULT_IMAGE = "greenpatch-worker:local"
SANDBOX_HOME = "/tmp"
LABEL = "greenpatch.sandbox"  # value: "<pid>:<process start time>" of the owning process
# Mount points that must be real directories in the image (docker-init is mounted at /sbin).
IMAGE_DIRS = ("etc", "tmp", "proc", "dev", "sys", "sbin", "usr")


def tiny_root() -> bytes:
    """A tar of the image's root filesystem: mount points and the host's system links."""
    buf = io.BytesIO()
    links = {p.lstrip("/"): t for p, t in hostfs.system_links().items()}
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in IMAGE_DIRS:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        for name, target in links.items():
            if name not in IMAGE_DIRS:
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, target
                tar.addfile(info)
    return buf.getvalue()


def _key(spec: WorkerSpec, owner: str) -> tuple[Any, ...]:
    """Containers are interchangeable between specs with the same mounts, limits and user."""
    return (str(spec.worktree), spec.argv[0], tuple(map(str, spec.readonly)), spec.limits, owner)


class DockerBackend(Backend):
    name = "docker"
    isolated = True

    def __init__(self, image: str = DEFAULT_IMAGE, base_url: str | None = None) -> None:
        """`base_url`: the engine's address (default: DOCKER_HOST or the local socket)."""
        try:
            import docker
            import requests
        except ImportError:
            raise SandboxError("the docker SDK is not installed: pip install docker") from None
        self._errors = docker.errors
        try:
            if base_url is None:
                self.client = docker.from_env(timeout=30)
            else:
                self.client = docker.DockerClient(base_url=base_url, timeout=30)
            self.client.ping()
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise SandboxError(
                f"Docker engine unreachable ({str(exc).splitlines()[0][:120]}): start dockerd "
                "or set DOCKER_HOST"
            ) from None
        self.image = image
        self._ensure_image()
        self._uids = UidPool()
        self._owners: dict[str, str] = {}
        self._spares: dict[tuple[Any, ...], Future[Any]] = {}
        self._live: set[str] = set()
        self._closed = False
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="docker-spare")
        self._label = f"{os.getpid()}:{process_start_time(os.getpid())}"
        self.remove_stale()
        atexit.register(self.close)

    def remove_stale(self) -> int:
        """Remove containers left by greenpatch processes that no longer run; how many."""
        removed = 0
        # Another greenpatch process may remove a stale container between the listing and
        # its inspection; that container is gone either way.
        listed = self.client.containers.list(
            all=True, filters={"label": LABEL}, ignore_removed=True
        )
        for container in listed:
            pid, _, start = container.labels.get(LABEL, "").partition(":")
            if pid.isdigit() and process_start_time(int(pid)) == start:
                continue
            self._remove(container)
            removed += 1
        return removed

    def _ensure_image(self) -> None:
        try:
            self.client.images.get(self.image)
            return
        except self._errors.ImageNotFound:
            pass
        repository, _, tag = self.image.rpartition(":")
        if not repository or "/" in tag:
            repository, tag = self.image, "latest"
        try:
            self.client.api.import_image_from_data(tiny_root(), repository=repository, tag=tag)
            self.client.images.get(self.image)
        except self._errors.DockerException as exc:
            raise SandboxError(f"cannot build image {self.image}: {exc}") from None

    def _owner(self, spec: WorkerSpec) -> str:
        path = str(spec.worktree)
        with self._lock:
            if path in self._owners:
                return self._owners[path]
        claimed = self._uids.claim(spec.worktree)
        stat = spec.worktree.stat()
        uid, gid = claimed or (stat.st_uid, stat.st_gid)
        with self._lock:
            return self._owners.setdefault(path, f"{uid}:{gid}")

    def _create(self, spec: WorkerSpec, user: str) -> Any:
        limits = spec.limits
        volumes = {p: {"bind": p, "mode": "ro"} for p in hostfs.system_dirs() + hostfs.etc_files()}
        for path in minimal_roots([*python_paths(spec.argv[0]), *spec.readonly]):
            if not spec.worktree.is_relative_to(path):
                volumes[str(path)] = {"bind": str(path), "mode": "ro"}
        from docker.types import Mount  # the SDK is imported on demand (see __init__)

        # A mount, not a volume: a volume's missing source is created by dockerd (as root), so a
        # spare container started after its worktree was removed left an empty folder behind.
        worktree = Mount(str(spec.worktree), str(spec.worktree), type="bind", read_only=False)
        try:
            container = self.client.containers.create(
                self.image,
                ["sleep", "infinity"],
                init=True,
                user=user,
                network_mode="none",
                read_only=True,
                tmpfs={"/tmp": f"rw,nosuid,nodev,size={limits.memory_mb}m"},
                mem_limit=f"{limits.memory_mb}m",
                memswap_limit=f"{limits.memory_mb}m",
                pids_limit=limits.processes,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                volumes=volumes,
                mounts=[worktree],
                working_dir=str(spec.worktree),
                hostname="sandbox",
                labels={LABEL: self._label},
                environment={"PATH": "/usr/local/bin:/usr/bin:/bin"},
            )
        except self._errors.DockerException as exc:
            raise SandboxError(f"cannot create a container: {exc}") from None
        with self._lock:
            self._live.add(container.id)
        try:
            container.start()
        except self._errors.DockerException as exc:
            self._remove(container)
            raise SandboxError(f"cannot start a container: {exc}") from None
        return container

    def _container(self, spec: WorkerSpec, user: str) -> Any:
        with self._lock:
            spare = self._spares.pop(_key(spec, user), None)
        if spare is not None:
            with contextlib.suppress(SandboxError):
                container = spare.result()
                container.reload()
                if container.status == "running":
                    return container
                self._remove(container)
        return self._create(spec, user)

    def _prepare_spare(self, spec: WorkerSpec, user: str) -> None:
        key = _key(spec, user)
        with self._lock:
            if key not in self._spares and not self._closed and spec.worktree.is_dir():
                self._spares[key] = self._pool.submit(self._create, spec, user)

    def prewarm(self, spec: WorkerSpec) -> None:
        """Have a container for `spec` running before `start(spec)`, which then costs one exec."""
        user = self._owner(spec)
        self._prepare_spare(spec, user)
        with self._lock:
            spare = self._spares.get(_key(spec, user))
        if spare is not None:
            spare.result()

    def _remove(self, container: Any) -> None:
        with contextlib.suppress(self._errors.DockerException):
            container.remove(force=True)
        with self._lock:
            self._live.discard(container.id)

    def start(self, spec: WorkerSpec) -> Worker:
        if not spec.worktree.is_dir():
            raise SandboxError(f"worktree {spec.worktree} does not exist")
        hostfs.check_readonly(spec.readonly)
        user = self._owner(spec)
        container = self._container(spec, user)
        env = worker_env(spec.env, SANDBOX_HOME)

        def stopped() -> None:
            self._prepare_spare(spec, user)

        try:
            worker = DockerWorker(self, container, spec, env, user, stopped)
        except self._errors.DockerException as exc:
            self._remove(container)
            raise SandboxError(f"cannot exec in the container: {exc}") from None
        worker.watch_disk(spec.worktree)
        return worker

    def close(self) -> None:
        with self._lock:
            self._closed = True
            spares, self._spares = list(self._spares.values()), {}
        for spare in spares:
            with contextlib.suppress(Exception):
                spare.result()
        with self._lock:
            live, self._live = list(self._live), set()
        for container_id in live:
            with contextlib.suppress(self._errors.DockerException):
                self.client.api.remove_container(container_id, force=True)


class _SocketWriter(io.RawIOBase):
    """The write half of the exec's hijacked connection, as a file; close() sends EOF."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.sendall(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
        super().close()


# Where the engine keeps a container's memory cgroup (v1 cgroupfs, v2 systemd or cgroupfs).
_OOM_FILES = (
    "/sys/fs/cgroup/memory/docker/{id}/memory.oom_control",
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.events",
    "/sys/fs/cgroup/docker/{id}/memory.events",
)


def oom_kills(container_id: str) -> int | None:
    """How many processes the container's memory cgroup killed, if the host shows it."""
    for pattern in _OOM_FILES:
        try:
            text = Path(pattern.format(id=container_id)).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    return None


def _frames(sock: socket.socket) -> Reader:
    """Demultiplex docker's attach stream: 8-byte headers (stream, size) before each chunk."""

    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return b""
            data += chunk
        return data

    def read() -> tuple[int, bytes]:
        while True:
            header = exact(8)
            if not header:
                return 1, b""
            stream, size = struct.unpack(">BxxxL", header)
            if size:
                payload = exact(size)
                return (2 if stream == 2 else 1), payload if payload else b""

    return read


class DockerWorker(StreamWorker):
    """A process exec'd in a container of its own; stopping it removes the container."""

    def __init__(
        self,
        backend: DockerBackend,
        container: Any,
        spec: WorkerSpec,
        env: dict[str, str],
        user: str,
        on_stop: Any,
    ) -> None:
        api = backend.client.api
        self._api, self._errors, self.container = api, backend._errors, container
        self._backend = backend
        self._on_stop = on_stop
        self._code: int | None = None
        self._oom = False
        self._stopped = False
        # The pids limit is the container's cgroup; RLIMIT_NPROC could not be raised here anyway.
        cmd = [*rlimits.prlimit_argv(spec.limits, nproc=False), *spec.argv]
        self._exec = api.exec_create(
            container.id,
            cmd,
            stdin=True,
            environment=env,
            workdir=str(spec.worktree),
            user=user,
        )["Id"]
        raw = api.exec_start(self._exec, socket=True)
        self._sock = getattr(raw, "_sock", raw)
        super().__init__(spec.limits, io.BufferedWriter(_SocketWriter(self._sock)))
        self.start_pump(_frames(self._sock), f"docker-{container.short_id}", self._close_socket)

    def _close_socket(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _kill(self) -> None:
        # Removing the container kills everything in it at once and leaves nothing behind.
        self._backend._remove(self.container)

    def _status(self, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._code is None:
            try:
                info = self._api.exec_inspect(self._exec)
                if not info["Running"] and info["ExitCode"] is not None:
                    code = info["ExitCode"]
                    # Read while the container (and its cgroup) still exists.
                    self._oom = bool(code == 137 and oom_kills(self.container.id))
                    self._code = -(code - 128) if code > 128 else code
                    break
            except self._errors.NotFound:  # the container is gone: it was killed
                self._code = -9
                break
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.02)
        return self._code

    def _memory_killed(self) -> bool:
        return self._oom

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(OSError):
            self._sock.close()
        if not self._stopped:
            self._stopped = True
            self._on_stop()
