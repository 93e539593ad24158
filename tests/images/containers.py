"""A built image run as a cluster runs it: its numeric user, every capability dropped, a read-only root filesystem,
and writable only what a pod mounts writable. The engine is the one `make images` built with
(`scripts/images.sh engine`): Docker has `--read-only`; buildah's chroot isolation has no such switch, so the
container's root is bind-mounted read-only onto itself before `buildah run`, with every mountpoint created first,
as a runtime does before it remounts a root read-only."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import REPO_ROOT

USER = "65532:65532"
"""The trainer image's user (dreem_operator.children.TRAINER_UID) and the operator's: the chart's runAsUser."""


def engine() -> str:
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "images.sh"), "engine"], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def built_images(registry: str | None = None) -> tuple[str, str]:
    """The operator's and the trainer's image names, as `make images` (REGISTRY=registry) tags them."""
    command = ["make", "-s", "--no-print-directory", "print-images"]
    env = {key: value for key, value in os.environ.items() if key not in ("REGISTRY", "MAKEFLAGS", "MFLAGS")}
    if registry is not None:
        command.append(f"REGISTRY={registry}")
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True)
    operator, trainer = result.stdout.split()
    return operator, trainer


def image_config(image: str) -> dict[str, Any] | None:
    """The image's OCI config (Entrypoint, User, Env, Labels...), or None when the engine has no such image."""
    if engine() == "docker":
        result = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, check=False)
        if result.returncode:
            return None
        config: dict[str, Any] = json.loads(result.stdout)[0]["Config"]
        return config
    result = subprocess.run(
        ["buildah", "inspect", "--type", "image", image], capture_output=True, text=True, check=False
    )
    if result.returncode:
        return None
    oci: dict[str, Any] = json.loads(result.stdout)["OCIv1"]["config"]
    return oci


@dataclass(frozen=True)
class Volume:
    host: Path
    path: str
    """Where the container sees it."""
    read_only: bool = False


class Container(ABC):
    """One image, with the volumes every command run in it gets."""

    def __init__(self, image: str, volumes: Sequence[Volume]) -> None:
        self.image, self.volumes = image, list(volumes)

    @abstractmethod
    def argv(self, command: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
        """The host command line that runs `command` in the container."""

    def run(
        self, *command: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(command, env), capture_output=True, text=True, check=False, timeout=timeout)

    @abstractmethod
    def close(self) -> None:
        """Undo what opening the container did."""


class DockerContainer(Container):
    def close(self) -> None:
        """Each run's container was removed as it ended (--rm)."""

    def argv(self, command: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
        flags = ["--rm", "--read-only", "--network=host", f"--user={USER}", "--cap-drop=ALL"]
        flags += [f"--volume={v.host}:{v.path}{':ro' if v.read_only else ''}" for v in self.volumes]
        flags += [f"--env={key}={value}" for key, value in (env or {}).items()]
        return ["docker", "run", *flags, f"--entrypoint={command[0]}", self.image, *command[1:]]


class BuildahContainer(Container):
    """A working container of the image whose root is read-only for every `buildah run` until close()."""

    def __init__(self, image: str, volumes: Sequence[Volume]) -> None:
        super().__init__(image, volumes)
        self.name = f"dreem-smoke-{uuid.uuid4().hex[:8]}"
        _host("buildah", "from", "--pull=never", "--quiet", "--name", self.name, image)
        self.root = Path(_host("buildah", "mount", self.name))
        self._read_only = False
        try:
            # Mountpoints first (the working container's own layer, not the image): buildah creates each one
            # it binds a volume or its hosts/resolv.conf files on, which a read-only root refuses.
            for volume in self.volumes:
                self._mountpoint(volume.path, directory=volume.host.is_dir())
            for name in ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf"):
                self._mountpoint(name, directory=False)
            # buildah writes its /run/.containerenv for each run and deletes it afterwards: /run is a tmpfs only
            # root may write to, so the image's user still sees nothing writable there.
            _host("mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", "tmpfs", str(self.root / "run"))
            _host("mount", "--rbind", str(self.root), str(self.root))
            _host("mount", "-o", "remount,bind,ro", str(self.root))
            self._read_only = True
        except BaseException:
            self.close()
            raise

    def _mountpoint(self, path: str, directory: bool) -> None:
        target = self.root / path.lstrip("/")
        if target.exists() or target.is_symlink():
            return
        if directory:
            target.mkdir(parents=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()

    def argv(self, command: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
        flags = ["--isolation=chroot", f"--user={USER}", "--cap-drop=all"]
        flags += [f"--volume={v.host}:{v.path}:{'ro' if v.read_only else 'rw'}" for v in self.volumes]
        flags += [f"--env={key}={value}" for key, value in (env or {}).items()]
        return ["buildah", "run", *flags, self.name, "--", *command]

    def close(self) -> None:
        if self._read_only:
            _host("umount", "--recursive", str(self.root))  # the read-only bind and what it carried
            self._read_only = False
        if (self.root / "run").is_mount():
            _host("umount", str(self.root / "run"))
        subprocess.run(["buildah", "rm", self.name], capture_output=True, check=False)


def _host(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout.strip()


@contextmanager
def container(image: str, volumes: Sequence[Volume] = ()) -> Iterator[Container]:
    opened: Container = DockerContainer(image, volumes) if engine() == "docker" else BuildahContainer(image, volumes)
    try:
        yield opened
    finally:
        opened.close()
