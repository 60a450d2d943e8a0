"""Master-key providers: where the key that wraps every data key lives.

A provider wraps and unwraps 32-byte data keys (AES-256-GCM, with the subject bound in as
associated data) and computes the blind index (HMAC-SHA256) under a key of its own. Two
providers are shipped, both tested here: a local key file for the embedded default, and a
PKCS#11 token whose keys are generated on the token as non-extractable and never leave it.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pkcs11
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11.mechanisms import GCMParams

NONCE_BYTES = 12
KEY_BYTES = 32
KEY_FILE_FORMAT = "pledge-master-keys/1"


class KeyUnavailable(Exception):
    """A master key named by a wrapped data key is not held by the provider."""


class MasterKeyProvider(Protocol):
    """What the keyring needs from wherever the master key lives."""

    refresh_seconds: float
    """How long another process may take to notice a rotation (retirement waits this long)."""

    @property
    def active_key_id(self) -> str:
        """The id of the key new data keys are wrapped under."""
        ...

    def wrap(self, data_key: bytes, aad: bytes) -> tuple[str, bytes]:
        """`data_key` encrypted under the active master key (nonce, ciphertext and tag), with
        the id of the key generation that was used: the one to record beside it."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        """The data key inside `wrapped`; raise `KeyUnavailable` if `key_id` is not held."""
        ...

    def blind_index(self, message: bytes) -> bytes:
        """HMAC-SHA256 of `message` under the blind-index key."""
        ...

    def rotate(self) -> str:
        """Create a new master key, make it active, and return its id."""
        ...

    def held_key_ids(self) -> list[str]:
        """Every master key generation the provider holds."""
        ...

    def retire(self, key_id: str) -> None:
        """Destroy a master key that no data key uses any more."""
        ...


class LocalKeyFile:
    """Master keys in a local file (mode 0600), created on first use.

    The file holds every master key generation (so data keys wrapped under an older one stay
    readable until `pledge keys rotate` re-wraps them) and the blind-index key.
    """

    refresh_seconds = 0.0
    """Each operation checks whether the file changed: other processes see a rotation at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._stamp: tuple[int, int] = (0, 0)
        if not path.exists():
            self._create()
        self._load()

    def _create(self) -> None:
        key_id = _new_key_id()
        content = {
            "format": KEY_FILE_FORMAT,
            "active": key_id,
            "keys": {key_id: _key_entry()},
            "index_key": _b64(secrets.token_bytes(KEY_BYTES)),
        }
        try:
            self._write(content, exclusive=True)
        except FileExistsError:
            return  # another process created it first; use theirs

    def _load(self) -> None:
        stat = self.path.stat()
        mode = stat.st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(
                f"{self.path} is readable by others (mode {mode:o}); it must be 0600"
            )
        content = json.loads(self.path.read_text())
        if content.get("format") != KEY_FILE_FORMAT:
            raise ValueError(f"{self.path} is not a Pledge key file")
        self._content: dict[str, Any] = content
        self._keys = {k: AESGCM(_unb64(v["key"])) for k, v in content["keys"].items()}
        self._index_key = _unb64(content["index_key"])
        self._stamp = (stat.st_ino, stat.st_mtime_ns)

    def _reload_if_changed(self) -> None:
        # Rotation in another process replaces the file (a new inode); notice it.
        stat = self.path.stat()
        if (stat.st_ino, stat.st_mtime_ns) != self._stamp:
            self._load()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the key file's lock (across processes) and work on its latest content."""
        with self._lock, self.path.with_suffix(".lock").open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                self._load()
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _write(self, content: dict[str, Any], *, exclusive: bool = False) -> None:
        data = json.dumps(content, indent=2).encode()
        target = self.path if exclusive else self.path.with_suffix(".tmp")
        flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
        fd = os.open(target, flags, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if not exclusive:
            target.replace(self.path)

    @property
    def active_key_id(self) -> str:
        """The id of the key new data keys are wrapped under."""
        self._reload_if_changed()
        key_id: str = self._content["active"]
        return key_id

    def wrap(self, data_key: bytes, aad: bytes) -> tuple[str, bytes]:
        """`data_key` sealed under the active key, and that key's id."""
        nonce = os.urandom(NONCE_BYTES)
        key_id = self.active_key_id
        return key_id, nonce + self._keys[key_id].encrypt(nonce, data_key, aad)

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        """The data key sealed in `wrapped` under key `key_id`."""
        key = self._keys.get(key_id)
        if key is None:
            self._reload_if_changed()
            key = self._keys.get(key_id)
        if key is None:
            raise KeyUnavailable(f"master key {key_id} is not in {self.path}")
        return key.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)

    def blind_index(self, message: bytes) -> bytes:
        """HMAC-SHA256 under the file's blind-index key."""
        return hmac.new(self._index_key, message, hashlib.sha256).digest()

    def held_key_ids(self) -> list[str]:
        """Every key generation in the file."""
        self._reload_if_changed()
        return list(self._keys)

    def rotate(self) -> str:
        """Add a new key generation and make it the active one."""
        with self._exclusive():
            key_id = _new_key_id()
            content = dict(self._content)
            content["keys"] = {**content["keys"], key_id: _key_entry()}
            content["active"] = key_id
            self._write(content)
            self._load()
            return key_id

    def retire(self, key_id: str) -> None:
        """Remove a key generation from the file."""
        with self._exclusive():
            if key_id == self._content["active"]:
                raise ValueError("the active master key cannot be retired")
            content = dict(self._content)
            content["keys"] = {k: v for k, v in content["keys"].items() if k != key_id}
            self._write(content)
            self._load()


class Pkcs11Token:
    """Master keys on a PKCS#11 token: AES-GCM wrapping and HMAC done by the token itself.

    Keys are labelled `<prefix>-<n>` (the highest n is active) and `<prefix>-index` (the
    blind-index HMAC key); each is generated on the token, sensitive and non-extractable.
    """

    refresh_seconds = 5.0
    """How often the token's key list is searched again for generations added elsewhere."""

    def __init__(self, library: Path, token_label: str, pin: str, key_prefix: str) -> None:
        self._refreshed = 0.0
        self._prefix = key_prefix
        self._lock = threading.RLock()
        token = pkcs11.lib(str(library)).get_token(token_label=token_label)
        try:
            self._session = token.open(user_pin=pin, rw=True)
        except pkcs11.exceptions.UserAlreadyLoggedIn:
            # Login is per token and process: another session of this process holds it.
            self._session = token.open(rw=True)
        self._keys = self._find_master_keys()
        if not self._keys:
            self._generate_master_key(1)
            self._keys = self._find_master_keys()
        self._index = self._find_or_generate_index_key()

    def _find_master_keys(self) -> dict[str, Any]:
        self._refreshed = time.monotonic()
        found = {}
        for key in self._session.get_objects(
            {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.SECRET_KEY}
        ):
            if not isinstance(key, pkcs11.SecretKey):
                continue
            label = key.label or ""
            generation = label.removeprefix(f"{self._prefix}-")
            if label.startswith(f"{self._prefix}-") and generation.isdigit():
                found[f"pkcs11:{label}"] = key
        return found

    def _generate_master_key(self, generation: int) -> None:
        self._session.generate_key(
            pkcs11.KeyType.AES,
            256,
            label=f"{self._prefix}-{generation}",
            store=True,
            template=_non_extractable(),
        )

    def _find_or_generate_index_key(self) -> Any:
        label = f"{self._prefix}-index"
        try:
            return self._session.get_key(label=label, object_class=pkcs11.ObjectClass.SECRET_KEY)
        except pkcs11.NoSuchKey:
            template = {
                **_non_extractable(),
                pkcs11.Attribute.SIGN: True,
                pkcs11.Attribute.VERIFY: True,
            }
            return self._session.generate_key(
                pkcs11.KeyType.GENERIC_SECRET, 256, label=label, store=True, template=template
            )

    @property
    def active_key_id(self) -> str:
        """The id of the highest key generation on the token."""
        if time.monotonic() - self._refreshed > self.refresh_seconds:
            with self._lock:
                self._keys = self._find_master_keys()
        return max(self._keys, key=lambda k: int(k.rsplit("-", 1)[1]))

    def wrap(self, data_key: bytes, aad: bytes) -> tuple[str, bytes]:
        """`data_key` encrypted by the token under the active key, and that key's id."""
        nonce = os.urandom(NONCE_BYTES)
        with self._lock:
            key_id = self.active_key_id
            sealed = self._keys[key_id].encrypt(
                data_key, mechanism=pkcs11.Mechanism.AES_GCM, mechanism_param=self._gcm(nonce, aad)
            )
        return key_id, nonce + bytes(sealed)

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        """The data key, decrypted by the token under key `key_id`."""
        key = self._keys.get(key_id)
        if key is None:
            with self._lock:
                self._keys = self._find_master_keys()
            key = self._keys.get(key_id)
        if key is None:
            raise KeyUnavailable(f"master key {key_id} is not on the token")
        with self._lock:
            return bytes(
                key.decrypt(
                    wrapped[NONCE_BYTES:],
                    mechanism=pkcs11.Mechanism.AES_GCM,
                    mechanism_param=self._gcm(wrapped[:NONCE_BYTES], aad),
                )
            )

    def blind_index(self, message: bytes) -> bytes:
        """HMAC-SHA256 computed by the token."""
        with self._lock:
            return bytes(self._index.sign(message, mechanism=pkcs11.Mechanism.SHA256_HMAC))

    def held_key_ids(self) -> list[str]:
        """Every key generation on the token."""
        return list(self._keys)

    def rotate(self) -> str:
        """Generate the next key generation on the token."""
        with self._lock:
            generation = int(self.active_key_id.rsplit("-", 1)[1]) + 1
            self._generate_master_key(generation)
            self._keys = self._find_master_keys()
            return self.active_key_id

    def retire(self, key_id: str) -> None:
        """Destroy a key generation on the token."""
        with self._lock:
            if key_id == self.active_key_id:
                raise ValueError("the active master key cannot be retired")
            self._keys.pop(key_id).destroy()

    def _gcm(self, nonce: bytes, aad: bytes) -> Any:
        return GCMParams(nonce, aad)

    def close(self) -> None:
        """Close the token session."""
        self._session.close()


def _non_extractable() -> dict[Any, bool]:
    return {pkcs11.Attribute.EXTRACTABLE: False, pkcs11.Attribute.SENSITIVE: True}


def _key_entry() -> dict[str, str]:
    return {
        "key": _b64(secrets.token_bytes(KEY_BYTES)),
        "created": dt.datetime.now(dt.UTC).isoformat(),
    }


def _new_key_id() -> str:
    return f"local:{secrets.token_hex(8)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)
