"""The Hugging Face Hub: reachability, and checkpoints named hf://owner/repo[@revision][/file].

Files come from the hub client's cache when they are there. Otherwise the client retries for about a
minute before giving up on an unreachable hub, so the hub is probed first and an offline machine is told
at once, naming the configuration key, which a restart would not fix.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from urllib.parse import urlsplit

from dreem_trainer.config.model import HUB_SCHEME
from dreem_trainer.contract import UserError


class CheckpointUnavailableError(UserError, RuntimeError):
    """A hub checkpoint that is neither cached nor downloadable: the user must change the key or go online."""


def is_hub(path: str | None) -> bool:
    return bool(path) and str(path).startswith(HUB_SCHEME)


def hub_endpoint() -> str:
    import huggingface_hub.constants as hub

    return str(hub.ENDPOINT)


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the configured hub endpoint (HF_ENDPOINT) opens within `timeout`."""
    url = urlsplit(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except OSError:
        return False
    return True


TRANSFER_FAULTS = frozenset(
    {
        "ReadTimeout",
        "ReadError",
        "RemoteProtocolError",
        "ChunkedEncodingError",
        "IncompleteRead",
        "ContentTooShortError",
    }
)
"""Errors (by class, across urllib, requests and httpx) of a download cut off after it started."""
CONNECT_FAULTS = frozenset(
    {"ConnectTimeout", "ConnectError", "ConnectionError", "NameResolutionError", "ConnectionRefusedError", "gaierror"}
)
"""Errors (by their own class, not a base: a reset connection is a ConnectionError too) of a connection that
never opened: a hub out of reach (a cluster without egress), not a hiccup."""


def retryable_download(error: BaseException) -> bool:
    """Whether a failed download may succeed when tried again: the server's fault (5xx), a rate limit (429;
    many pods start at once), a transfer cut off, a full disk. Not a refusal (401, 403, 404), nor a hub that
    cannot be reached at all (an air-gapped cluster): those only the user can change, so the job fails at
    once rather than restart to fail the same way."""
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(type(cause).__name__ in CONNECT_FAULTS for cause in chain):
        return False
    for cause in chain:
        response = getattr(cause, "response", None)
        status = getattr(response, "status_code", None) or getattr(cause, "code", None)
        if isinstance(status, int) and 100 <= status < 600:
            return status == 429 or status >= 500
        if any(kind.__name__ in TRANSFER_FAULTS for kind in type(cause).__mro__):
            return True
        if isinstance(cause, (ConnectionResetError, TimeoutError)) or getattr(cause, "errno", None) == errno.ENOSPC:
            return True
    return False


def fetch_checkpoint(uri: str, key: str) -> Path:
    """The local path of the hub checkpoint `uri`, downloading it into the hub cache if needed.

    Without a file name the repository must hold exactly one `.ckpt` file. Problems are
    CheckpointUnavailableError naming `key`.
    """
    import huggingface_hub.constants as hub
    from huggingface_hub import parse_hf_uri
    from huggingface_hub.errors import HfHubHTTPError, HfUriError, LocalEntryNotFoundError

    try:
        parsed = parse_hf_uri(uri)
    except HfUriError as error:
        raise CheckpointUnavailableError(f"{key}: {error}") from None
    if parsed.type != "model":
        raise CheckpointUnavailableError(f"{key}: {uri} names a {parsed.type}; checkpoints live in model repos")
    repo, revision, file = parsed.id, parsed.revision, parsed.path_in_repo
    try:
        return _cached(repo, revision, file, key)
    except LocalEntryNotFoundError:
        pass
    where = f"not in the Hugging Face cache ({hub.HF_HUB_CACHE})"
    if hub.HF_HUB_OFFLINE:
        raise CheckpointUnavailableError(f"{key}: {uri} is {where} and HF_HUB_OFFLINE is set") from None
    if not hub_reachable():
        raise CheckpointUnavailableError(
            f"{key}: {uri} is {where} and the hub at {hub_endpoint()} cannot be reached; download it on a machine "
            "online into the same HF_HOME, or give a local path"
        ) from None
    try:
        return _download(repo, revision, file, key)
    except HfHubHTTPError as error:
        if retryable_download(error):
            raise  # the job restarts and tries again
        raise CheckpointUnavailableError(f"{key}: {uri} could not be downloaded: {error}") from None


def _cached(repo: str, revision: str | None, file: str, key: str) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    if file:
        return Path(hf_hub_download(repo, file, revision=revision, local_files_only=True))
    folder = snapshot_download(repo, revision=revision, allow_patterns=["*.ckpt"], local_files_only=True)
    return Path(folder, _only_checkpoint([p.name for p in Path(str(folder)).rglob("*.ckpt")], repo, key))


def _download(repo: str, revision: str | None, file: str, key: str) -> Path:
    from huggingface_hub import hf_hub_download, list_repo_files

    file = file or _only_checkpoint(list_repo_files(repo, revision=revision), repo, key)
    return Path(hf_hub_download(repo, file, revision=revision))


def _only_checkpoint(files: list[str], repo: str, key: str) -> str:
    checkpoints = sorted(f for f in files if f.endswith(".ckpt"))
    if len(checkpoints) != 1:
        found = ", ".join(checkpoints) if checkpoints else "none"
        raise CheckpointUnavailableError(
            f"{key}: hf://{repo} holds {len(checkpoints)} .ckpt files ({found}); name one: hf://{repo}/FILE"
        )
    return checkpoints[0]
