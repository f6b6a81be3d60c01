"""The recording vault as configured (SB_RECORDING_*): the master key and the blob store. The recording
service and the API (playback) build theirs the same way."""

from __future__ import annotations

import importlib
from pathlib import Path

from services.kernel.config import ConfigError, Settings

from .store import BlobStore, LocalStore
from .vault import KeyRing, LocalMasterKey, MasterKey

__all__ = ["keyring_from", "master_key_from", "store_from"]


def keyring_from(settings: Settings) -> KeyRing:
    """The configured master key (SB_RECORDING_MASTER_KEY, a KMS; else the key file), and the old key files
    of a rotation under way (SB_RECORDING_OLD_KEY_FILES)."""
    if settings.recording_master_key:
        master = master_key_from(settings.recording_master_key, settings)
    else:
        path = Path(settings.recording_key_file) if settings.recording_key_file else None
        master = LocalMasterKey.load_or_create(path or settings.data_dir / "keys" / "recording-master.key")
    old = [Path(p.strip()) for p in settings.recording_old_key_files.split(",") if p.strip()]
    return KeyRing(master, [LocalMasterKey.load(p) for p in old])


def master_key_from(spec: str, settings: Settings) -> MasterKey:
    """`package.module:factory` -> factory(settings), which must be a MasterKey (key_id, wrap, unwrap)."""
    name = "SB_RECORDING_MASTER_KEY"
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{name}={spec!r} must be package.module:factory")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{name}={spec!r} cannot be loaded: {exc}") from None
    master = factory(settings)
    if not isinstance(master, MasterKey) or not str(master.key_id):
        raise ConfigError(
            f"{name}={spec!r} made {type(master).__name__}, not a MasterKey (key_id, wrap, unwrap)"
        )
    return master


def store_from(settings: Settings) -> BlobStore:
    url = settings.recording_store
    if not url:
        return LocalStore(settings.data_dir / "recordings")
    if url.startswith("file:"):
        return LocalStore(Path(url[len("file:") :]))
    if url.startswith("s3://"):
        from .store_s3 import S3Store  # boto3 is needed only there

        bucket, _, prefix = url[len("s3://") :].partition("/")
        return S3Store(
            bucket,
            prefix=prefix,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id or None,
            secret_access_key=settings.s3_secret_access_key or None,
        )
    raise ConfigError(f"SB_RECORDING_STORE={url!r} is neither file:PATH nor s3://BUCKET")
