"""Keys: master-key providers, per-subject data keys in a separate key store, blind indexes."""

from pledge.keyring.providers import (
    KeyUnavailable,
    LocalKeyFile,
    MasterKeyProvider,
    Pkcs11Token,
)
from pledge.keyring.service import (
    Keyring,
    RotationReport,
    SubjectKeyDestroyed,
    open_keystore,
    open_provider,
)

__all__ = [
    "KeyUnavailable",
    "Keyring",
    "LocalKeyFile",
    "MasterKeyProvider",
    "Pkcs11Token",
    "RotationReport",
    "SubjectKeyDestroyed",
    "open_keystore",
    "open_provider",
]
