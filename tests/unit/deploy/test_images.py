"""The two Dockerfiles, read statically (`make images` builds them and `make images-smoke` runs them; neither is
part of `make test`): pinned bases behind one BASE argument, a non-root numeric user, OCI labels, no build tools
in the final stage, and the trainer's directories where the operator mounts its volumes."""

from __future__ import annotations

import re

import pytest

from dreem_operator.children import TRAINER_UID
from dreem_operator.names import CACHE_MOUNT, CONFIG_MOUNT, SCRATCH_MOUNT
from tests.conftest import REPO_ROOT

DOCKERFILES = {"operator": REPO_ROOT / "Dockerfile", "trainer": REPO_ROOT / "trainer_image" / "Dockerfile"}
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make ", "cmake", "-dev ", "git ")


def final_stage(text: str) -> str:
    return re.split(r"^FROM ", text, flags=re.MULTILINE)[-1]


def arguments(text: str) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))


@pytest.mark.parametrize("name", DOCKERFILES)
def test_bases_are_pinned(name: str) -> None:
    text = DOCKERFILES[name].read_text()
    args = arguments(text)
    for base in re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE):
        image = args.get(base.strip("${}"), base)
        assert re.search(r":\d+\.\d+", image) and not image.endswith(":latest"), image


@pytest.mark.parametrize("name", DOCKERFILES)
def test_final_stage_is_lean_non_root_and_labelled(name: str) -> None:
    text = DOCKERFILES[name].read_text()
    stage = final_stage(text)
    user = re.findall(r"^USER (\S+)", stage, flags=re.MULTILINE)
    assert user and re.fullmatch(r"[1-9]\d*:[1-9]\d*", user[-1]), user
    # Named in /etc/passwd: getpass.getuser() (kopf's peering identity, torch's cache paths) fails without it.
    uid, gid = user[-1].split(":")
    assert re.search(rf"echo '\w+:x:{uid}:{gid}:[^']*' >> /etc/passwd", stage), stage
    installs = " ".join(re.findall(r"apt-get install[^&]*", stage.replace("\\\n", " "))) + " "
    assert not [tool for tool in BUILD_TOOLS if tool in installs], installs
    for label in ("title", "description", "source", "licenses", "version"):
        assert f"org.opencontainers.image.{label}=" in stage
    # The sources copied in for the install leave with it (the package is what runs).
    project_install = re.search(r"pip install [^\n]*'/src\[\w+\]'(.*?)\n(?!\s*&&)", stage, flags=re.DOTALL)
    assert project_install is not None and "&& rm -rf /src" in project_install.group(1), stage


def test_every_stage_builds_from_the_base_argument() -> None:
    """One base for both stages, so the venv's interpreter exists where the final stage runs it; `make images`
    passes a bootstrapped Debian as BASE where no Docker engine runs, the default is the upstream image."""
    for path in DOCKERFILES.values():
        text = path.read_text()
        assert re.match(r"(#.*\n)*ARG BASE=python:3\.11\.\d+-slim-bookworm\n", text), path
        assert re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE) == ["${BASE}"], path
        assert 'org.opencontainers.image.base.name="${BASE}"' in final_stage(text)
        # pip's index settings reach the build's RUN steps only (ARG): they never become the image's environment.
        environment = " ".join(re.findall(r"^ENV .*(?:\\\n.*)*", text, flags=re.MULTILINE))
        for setting in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT"):
            assert f'ARG {setting}=""' in text and setting not in environment, (path, setting)


def test_trainer_installs_the_cuda_build_of_torch_from_the_index() -> None:
    text = DOCKERFILES["trainer"].read_text()
    installs = re.findall(r"pip install --no-cache-dir -c /src/constraints.txt ([^\\\n]*)", text)
    assert [install.strip() for install in installs] == ["torch==2.14.1 torchvision==0.29.1", "'/src[train]'"]
    assert "imageio_ffmpeg" in text  # the build fails when the wheel's ffmpeg does not run
    assert 'ENTRYPOINT ["dreem"]' in text
    assert f"USER {TRAINER_UID}:{TRAINER_UID}" in text  # the operator's pods run as this uid


def test_operator_image_has_only_the_operator_extra() -> None:
    text = re.sub(r"#.*", "", DOCKERFILES["operator"].read_text())
    installs = re.findall(r"pip install [^\\\n]*", text)
    assert [install.strip() for install in installs] == [
        "pip install --no-cache-dir -c /src/constraints.txt '/src[operator]'"
    ]
    assert "torch" not in text and 'ENTRYPOINT ["dreem-operator"]' in text


def test_trainer_environment_matches_the_operators_mounts() -> None:
    """HOME, TMPDIR and the cache point where the operator mounts writable volumes, and the image creates those
    directories for its user, so a read-only root filesystem leaves the trainer every place it writes."""
    stage = final_stage(DOCKERFILES["trainer"].read_text()).replace("\\\n", " ")
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(re.findall(r"^ENV (.*)$", stage, flags=re.MULTILINE))))
    assert (env["HOME"], env["TMPDIR"], env["DREEM_CACHE_DIR"]) == (SCRATCH_MOUNT, SCRATCH_MOUNT, CACHE_MOUNT)
    assert env["MPLCONFIGDIR"].startswith(SCRATCH_MOUNT + "/")
    made = re.search(r"mkdir -p ([^&]*)&&\s*chown 65532:65532 ([^&\n]*)", stage)
    assert made is not None
    assert {SCRATCH_MOUNT, CACHE_MOUNT, CONFIG_MOUNT} <= set(made.group(1).split())
    assert {SCRATCH_MOUNT, CACHE_MOUNT} == set(made.group(2).split())


@pytest.mark.parametrize("name", DOCKERFILES)
def test_build_context_admits_what_the_dockerfile_copies(name: str) -> None:
    admitted = {line[1:] for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    copied = re.findall(r"^COPY (?!--from)(.*) \S+$", DOCKERFILES[name].read_text(), flags=re.MULTILINE)
    sources = {source for line in copied for source in line.split()}
    assert sources and sources <= admitted, sources - admitted
