"""The two Dockerfiles, read statically (images are built by `make images` where Docker runs): pinned bases,
a non-root numeric user, OCI labels, and no build tools in the final stage."""

from __future__ import annotations

import re

import pytest

from dreem_operator.children import TRAINER_UID
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
    installs = " ".join(re.findall(r"apt-get install[^&]*", stage.replace("\\\n", " "))) + " "
    assert not [tool for tool in BUILD_TOOLS if tool in installs], installs
    for label in ("title", "description", "source", "licenses", "version"):
        assert f"org.opencontainers.image.{label}=" in stage
    assert "pip install" not in stage


def test_trainer_runs_on_the_cuda_runtime_matching_torch() -> None:
    text = DOCKERFILES["trainer"].read_text()
    assert "nvidia/cuda:13.0" in arguments(text)["CUDA_IMAGE"] and "-runtime-" in arguments(text)["CUDA_IMAGE"]
    assert "torch==2.14.1" in text and 'ENTRYPOINT ["dreem"]' in text
    assert f"USER {TRAINER_UID}:{TRAINER_UID}" in text  # the operator's pods run as this uid
