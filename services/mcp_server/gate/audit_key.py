"""The audit chain's HMAC key: a file outside the database, readable by its owner only."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

KEY_BYTES = 32


class AuditKeyError(Exception):
    """The key cannot be used: missing, unreadable, malformed, or open to other users."""


class AuditKeyMissing(AuditKeyError):
    """There is no key file (yet)."""


def default_key_path(db_path: Path) -> Path:
    """Where the key lives unless AUDIT_KEY_PATH says otherwise: beside the database, like owner.key."""
    return db_path.parent / "audit.key"


def load_key(path: Path) -> bytes:
    """Read the key, refusing one that other users could read or change (they could then forge the chain)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise AuditKeyMissing(f"the audit key {path} is missing") from None
    except OSError as exc:
        raise AuditKeyError(f"the audit key {path} cannot be read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AuditKeyError(f"the audit key {path} is not a regular file")
        if info.st_mode & 0o077:
            raise AuditKeyError(f"the audit key {path} has mode {stat.S_IMODE(info.st_mode):04o}, which is too "
                                f"open: only its owner may read it (chmod 600 {path})")
        text = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise AuditKeyError(f"the audit key {path} is not {KEY_BYTES} or more bytes in hex")
    return key


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def write_key(path: Path, key: bytes) -> None:
    """Write `key` to a new file (mode 0600); never replaces a key that exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # a link, not a rename: it fails where a key already exists instead of replacing it
        os.link(temporary, path)
    except FileExistsError:
        raise AuditKeyError(f"the audit key {path} appeared while a new one was being made") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Make a new or renamed name in `folder` survive a power loss."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
