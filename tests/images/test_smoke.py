"""`make images-smoke`: the two images `make images` built, run as the cluster runs them (non-root, read-only
root, the volumes a pod mounts). The trainer reports its version, checks an example config, and trains one epoch
on CPU on the bundled clip; the operator starts, answers its liveness probe and takes a job through its lifecycle
against the API emulator on loopback. Not part of `make test`: image builds take minutes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from dreem_operator.children import TRAINER_UID
from tests.conftest import DEMO_DATA, REPO_ROOT, free_port
from tests.images.containers import USER, Container, Volume, built_images, container, image_config
from tests.k8s.harness import Kubectl, cluster_with_crd, job_manifest, minimal_spec, phase_is
from tests.k8s.kubelet import LocalKubelet
from tests.k8s.operator_process import OperatorProcess

pytestmark = pytest.mark.images

DEMO_CONFIG = REPO_ROOT / "examples" / "demo" / "train.yaml"
KUBECONFIG_IN_IMAGE = "/etc/dreem-operator/kubeconfig"


@pytest.fixture(scope="module")
def images() -> tuple[str, str]:
    """The operator's and the trainer's image: as `make images-smoke` passes them, else as the Makefile names them."""
    operator, trainer = os.environ.get("OPERATOR_IMAGE"), os.environ.get("TRAINER_IMAGE")
    return (operator, trainer) if operator and trainer else built_images()


def built(image: str) -> str:
    if image_config(image) is None:
        pytest.fail(f"{image} is not built: run `make images` first")
    return image


@pytest.fixture
def operator_image(images: tuple[str, str]) -> str:
    return built(images[0])


@pytest.fixture
def trainer_image(images: tuple[str, str]) -> str:
    return built(images[1])


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The pod's emptyDir volumes: owned by the image's user, as fsGroup makes them."""
    for name in ("scratch", "cache"):
        (tmp_path / name).mkdir()
        os.chown(tmp_path / name, TRAINER_UID, TRAINER_UID)
    return tmp_path


@pytest.fixture
def trainer(trainer_image: str, scratch: Path) -> Iterator[Container]:
    volumes = [
        Volume(DEMO_CONFIG.parent, "/etc/dreem", read_only=True),  # the ConfigMap
        Volume(DEMO_DATA, "/data", read_only=True),
        Volume(scratch / "scratch", "/scratch"),
        Volume(scratch / "cache", "/var/cache/dreem"),
    ]
    with container(trainer_image, volumes) as opened:
        yield opened


def test_trainer_image_runs_dreem_as_the_operators_user(trainer_image: str) -> None:
    config = image_config(trainer_image)
    assert config is not None
    assert config["Entrypoint"] == ["dreem"] and config["User"] == USER == f"{TRAINER_UID}:{TRAINER_UID}"
    env = dict(item.split("=", 1) for item in config["Env"])
    # The directories the operator mounts and points HOME and TMPDIR at, so the image behaves alike outside a pod.
    assert (env["HOME"], env["TMPDIR"], env["DREEM_CACHE_DIR"]) == ("/scratch", "/scratch", "/var/cache/dreem")


def test_trainer_root_filesystem_is_read_only_to_its_user(trainer: Container) -> None:
    probe = (
        "import sys\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        open(path, 'w').close()\n"
        "        print(path, 'writable')\n"
        "    except OSError as error:\n"
        "        print(path, error.strerror)"
    )
    paths = ["/opt/venv/probe", "/probe", "/tmp/probe", "/scratch/probe", "/var/cache/dreem/probe", "/etc/dreem/x"]
    result = trainer.run("python3", "-c", probe, *paths)
    assert result.returncode == 0, result.stderr
    seen = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert seen == {
        "/opt/venv/probe": "Read-only file system",
        "/probe": "Read-only file system",
        "/tmp/probe": "Read-only file system",
        "/scratch/probe": "writable",
        "/var/cache/dreem/probe": "writable",
        "/etc/dreem/x": "Read-only file system",
    }


def test_trainer_reports_its_version(trainer: Container) -> None:
    result = trainer.run("dreem", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"dreem {version('dreem-operator')}"


def test_trainer_carries_the_cuda_build_of_torch_and_ffmpeg(trainer: Container) -> None:
    probe = (
        "import subprocess, torch, torchvision, imageio_ffmpeg\n"
        "print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version(), torchvision.__version__)\n"
        "out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), '-version'], capture_output=True, text=True)\n"
        "print(out.stdout.split()[2])"
    )
    result = trainer.run("python3", "-c", probe)
    assert result.returncode == 0, result.stderr
    torch_version, cuda, cudnn, torchvision_version, ffmpeg = result.stdout.split()
    # The wheels' local versions name the CUDA build: 2.14.1+cu130.
    assert (torch_version, torchvision_version) == ("2.14.1+cu130", "0.29.1+cu130")
    assert cuda.startswith("13.0") and int(cudnn) >= 90000, (cuda, cudnn)  # cuDNN loads from its wheel
    assert re.search(r"\d+\.\d+", ffmpeg), ffmpeg  # e.g. n9.0.2-17-g2a571b6068-20260930


def test_trainer_validates_an_example_config(trainer: Container) -> None:
    result = trainer.run("dreem", "config", "validate", "/etc/dreem/train.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_trainer_trains_one_epoch_on_the_demo_clip(trainer: Container, scratch: Path) -> None:
    result = trainer.run(
        "dreem",
        "train",
        "--config",
        "/etc/dreem/train.yaml",
        "--set",
        "dataset.train_dataset.dir.path=/data",
        "--set",
        "dataset.val_dataset.dir.path=/data",
        "--set",
        "checkpointing.dirpath=/scratch/models",
        "--set",
        "logging.save_dir=/scratch/logs",
        "--set",
        "trainer.max_epochs=1",
        env={"OMP_NUM_THREADS": "2"},
        timeout=900,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    models = scratch / "scratch" / "models"
    checkpoint = models / "last.ckpt"
    assert checkpoint.is_file() and checkpoint.stat().st_uid == TRAINER_UID, sorted(models.iterdir())
    metrics = list((scratch / "scratch" / "logs").rglob("metrics.csv"))
    assert metrics and "val_idf1" in metrics[0].read_text()


class ImageOperatorProcess(OperatorProcess):
    """The operator of the image, in a read-only container, reaching the emulator over loopback."""

    def __init__(self, operator: Container, kubeconfig: Path, log: Path, **settings: str) -> None:
        super().__init__(kubeconfig, log, **settings)
        self.container = operator

    def command(self, *args: str) -> tuple[list[str], dict[str, str]]:
        env = self.settings | {"KUBECONFIG": KUBECONFIG_IN_IMAGE}
        return self.container.argv(["dreem-operator", *args], env), dict(os.environ)


def test_operator_image_carries_no_torch(operator_image: str) -> None:
    config = image_config(operator_image)
    assert config is not None and config["Entrypoint"] == ["dreem-operator"] and config["User"] == USER
    with container(operator_image) as operator:
        result = operator.run("python3", "-c", "import importlib.util as u; print(u.find_spec('torch'))")
    assert result.returncode == 0 and result.stdout.strip() == "None", result.stdout + result.stderr


def test_operator_reconciles_a_job_against_the_emulator(
    operator_image: str, images: tuple[str, str], tmp_path: Path
) -> None:
    trainer_image = images[1]
    with cluster_with_crd(tmp_path) as cluster:
        kubeconfig = Volume(cluster.kubeconfig, KUBECONFIG_IN_IMAGE, read_only=True)
        with container(operator_image, [kubeconfig]) as image:
            operator = ImageOperatorProcess(
                image,
                cluster.kubeconfig,
                tmp_path / "operator.log",
                master_port=str(free_port()),
                trainer_image=trainer_image,  # as the chart sets it
            )
            operator.start()  # returns once the liveness probe answers 200
            # A node that runs each pod as a process that exits 0: the operator's side is what is under test.
            kubelet = LocalKubelet(cluster.kubeconfig, tmp_path / "node", ["true"], {}).start()
            try:
                kubectl = Kubectl(cluster.kubeconfig)
                kubectl.apply_job(job_manifest("smoke", minimal_spec("smoke", nodes=1)))
                job = kubectl.wait_for("smoke", phase_is("Succeeded", "Failed"), timeout=120, what="a final phase")
                pods = kubectl.pods(selector="dreem.sleap.ai/job=smoke")
                config_map = kubectl.core.read_namespaced_config_map("smoke-config", "default")
            finally:
                kubelet.stop()
                operator.stop()
    log = (tmp_path / "operator.log").read_text()
    assert job["status"]["phase"] == "Succeeded", (job["status"], log[-3000:])
    assert [pod["spec"]["containers"][0]["image"] for pod in pods] == [trainer_image]
    # The resolved config the pods read: outputs placed under the job's storage.output.
    config = yaml.safe_load(config_map.data["config.yaml"])
    assert config["checkpointing"]["dirpath"] == "s3://lab/runs/smoke/models"
