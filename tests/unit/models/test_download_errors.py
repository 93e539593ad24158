"""Which failed downloads of pretrained weights and hub checkpoints end the job (the user's to fix) and which a
restart may get past: HTTP statuses and transfer faults as urllib, requests and httpx raise them."""

from __future__ import annotations

import errno
import urllib.error
from email.message import Message

import httpx2 as httpx  # the HTTP client huggingface_hub raises with
import pytest
from huggingface_hub.errors import HfHubHTTPError

from dreem_trainer.models.hub import retryable_download


def http_error(status: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("https://download.pytorch.org/models/resnet18.pth", status, "x", Message(), None)


def hub_error(status: int) -> HfHubHTTPError:
    request = httpx.Request("GET", "https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors")
    return HfHubHTTPError(f"{status}", response=httpx.Response(status, request=request))


def caused(error: BaseException, by: BaseException) -> BaseException:
    try:
        raise error from by
    except BaseException as raised:
        return raised


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (http_error(503), True),
        (http_error(429), True),
        (http_error(404), False),
        (http_error(403), False),
        (hub_error(502), True),
        (hub_error(429), True),
        (hub_error(401), False),
        (caused(RuntimeError("timm could not load the weights"), hub_error(500)), True),
        (caused(RuntimeError("timm could not load the weights"), hub_error(404)), False),
        (httpx.ReadTimeout("read timed out"), True),
        (httpx.RemoteProtocolError("peer closed connection without sending complete message body"), True),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), True),
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), False),  # no hub to reach at all
        # A cluster dropping outbound traffic: the connection never opens, and times out; not a hiccup.
        (caused(RuntimeError("timm could not load the weights"), httpx.ConnectTimeout("timed out")), False),
        (httpx.ConnectError("[Errno -2] Name or service not known"), False),
        (RuntimeError("Unknown model (resnet19)"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_a_download_is_retried_only_where_a_later_try_may_succeed(error: BaseException, retryable: bool) -> None:
    assert retryable_download(error) is retryable
