"""Named profiles (API URL and key) in `$XDG_CONFIG_HOME/switchboard/profiles.toml`.

The file holds secrets: it is written atomically (a temporary file renamed over the old one) with mode
0600 in a 0700 directory, so neither a crash mid-write nor another local user can see a key.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_PROFILE",
    "Profile",
    "ProfileError",
    "check_profile_name",
    "config_dir",
    "load_profiles",
    "profiles_path",
    "save_profile",
]

DEFAULT_PROFILE = "default"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ProfileError(Exception):
    """The profile file cannot be read or written, or a profile name is not valid."""


@dataclass(frozen=True)
class Profile:
    api_url: str | None = None
    api_key: str | None = None
    # Kept by `signup` so a second signup of the same company and email can be noticed before it makes
    # a duplicate tenant (the API does not say whether an email signed up: that would leak accounts).
    tenant_id: str | None = None
    company: str | None = None
    email: str | None = None


_FIELDS = ("api_url", "api_key", "tenant_id", "company", "email")


def config_dir() -> Path:
    """`$XDG_CONFIG_HOME/switchboard`, or `~/.config/switchboard` (the XDG default)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "switchboard"


def profiles_path() -> Path:
    return config_dir() / "profiles.toml"


def check_profile_name(name: str) -> str:
    if not _NAME.match(name):
        raise ProfileError(f"profile name {name!r} is not valid: use 1-64 letters, digits, '-' or '_'")
    return name


def load_profiles(path: Path | None = None) -> dict[str, Profile]:
    path = path or profiles_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ProfileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"cannot read {path}: not valid TOML ({exc})") from exc
    profiles: dict[str, Profile] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            continue
        fields = {f: table.get(f) for f in _FIELDS}
        profiles[name] = Profile(**{f: v if isinstance(v, str) else None for f, v in fields.items()})
    return profiles


def _toml_string(value: str) -> str:
    # JSON string escapes (with non-ASCII as \uXXXX) are all valid TOML basic-string escapes.
    return json.dumps(value, ensure_ascii=True)


def render(profiles: dict[str, Profile]) -> str:
    lines = ["# Switchboard CLI profiles: written by `switchboard signup` and `switchboard login`.", ""]
    for name in sorted(profiles):
        profile = profiles[name]
        lines.append(f"[{_toml_string(name)}]")
        for field in _FIELDS:
            value = getattr(profile, field)
            if value is not None:
                lines.append(f"{field} = {_toml_string(value)}")
        lines.append("")
    return "\n".join(lines)


def save_profile(name: str, profile: Profile, path: Path | None = None) -> Path:
    """Write (or replace) one profile, keeping the others; returns the file's path."""
    check_profile_name(name)
    path = path or profiles_path()
    profiles = load_profiles(path)
    profiles[name] = profile
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask, and an existing directory keeps its mode: set it.
        os.chmod(directory, 0o700)
        # mkstemp creates the file with mode 0600 from the start: the key is never readable by others.
        fd, tmp_name = tempfile.mkstemp(prefix=".profiles-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(render(profiles))
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp_name, 0o600)
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ProfileError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
