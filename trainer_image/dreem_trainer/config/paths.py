"""`s3://bucket/prefix` URIs, accepted wherever the configuration takes a path. Pure: no boto3 here."""

from __future__ import annotations

import re
from dataclasses import dataclass

S3_SCHEME = "s3://"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def is_s3(path: str | None) -> bool:
    return bool(path) and str(path).startswith(S3_SCHEME)


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    @classmethod
    def parse(cls, text: str) -> S3Uri:
        """Parse `s3://bucket/key`; a malformed URI raises ValueError naming it and the rule it breaks."""
        if not text.startswith(S3_SCHEME):
            raise ValueError(f"{text!r} is not an s3:// URI")
        bucket, _, key = text[len(S3_SCHEME) :].partition("/")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ValueError(
                f"{text!r}: {bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, '.', '-')"
            )
        if "//" in key or any(part in (".", "..") for part in key.split("/")):
            raise ValueError(f"{text!r}: the key may not contain empty, '.' or '..' parts")
        return cls(bucket, key.rstrip("/"))

    def join(self, name: str) -> S3Uri:
        return S3Uri(self.bucket, f"{self.key}/{name}" if self.key else name)

    @property
    def prefix(self) -> str:
        """The key as a folder prefix (ending in '/' unless it is the bucket root)."""
        return f"{self.key}/" if self.key else ""

    def __str__(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.key}"


_SCHEME_TYPO = re.compile(r"^s3:/?[^/]|^s3:$|^s3//", re.IGNORECASE)


def check_path(path: str) -> str:
    """Field validator: an s3:// path must parse; local paths pass as they are, except those that look
    like a mistyped s3:// URI (`s3:/bucket`, `S3://`), which would otherwise become a local folder named `s3:`."""
    if is_s3(path):
        S3Uri.parse(path)
    elif _SCHEME_TYPO.match(path) or path.lower().startswith(S3_SCHEME):
        raise ValueError(f"{path!r} looks like an S3 location but is not of the form s3://bucket/key")
    return path
