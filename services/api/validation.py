"""Checks msgspec's type constraints cannot express: trimming, e-mail shape, time zones, skills, languages,
E.164 numbers. Each raises a 422 problem naming the field."""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from functools import cache

from .problems import validation

__all__ = [
    "check_e164",
    "check_email",
    "check_endpoint",
    "check_languages",
    "check_name",
    "check_skills",
    "check_text",
    "check_timezone",
]

NAME_MAX = 100
EMAIL_MAX = 254
SKILLS_MAX = 50
LANGUAGES_MAX = 20

_EMAIL = re.compile(r"^[^@\s]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_SKILL = re.compile(r"^[a-z0-9_-]{1,40}$")
# BCP 47 in its common shapes: language, optional script, region or variants (en, zh-HK, zh-Hant-TW).
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,3}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# A SIP or SIPS URI with a host: optional user part, host name, IPv4 or [IPv6], optional port, parameters.
_SIP_URI = re.compile(
    r"^sips?:(?:[^@\s;?]+@)?"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::([0-9]{1,5}))?(?:;[^\s?]*)?(?:\?[^\s]*)?$"
)
ENDPOINT_MAX = 256
# Control characters (NUL in particular, which PostgreSQL text cannot hold) have no place in names.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Embeddings, overrides, isolates and the marks (U+061C, U+200E, U+200F): they reorder what is displayed.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_INVISIBLE = {"Cf", "Zs", "Zl", "Zp", "Mn", "Me"}  # formatting (zero-width), spaces, combining marks


def check_text(field: str, value: str, *, max_len: int, min_len: int = 1) -> str:
    """Names and short texts. Refused, not normalised (the caller sees what was wrong and chooses):
    control characters, bidirectional formatting characters (an override makes a name display as
    something else: "gnp.exe" shown as "exe.png"), and text with no visible character (only
    zero-width or other invisible formatting characters)."""
    value = value.strip()
    if _CONTROL.search(value):
        raise validation(field, "must not contain control characters")
    if _BIDI.search(value):
        raise validation(
            field, "must not contain bidirectional formatting characters (U+202A-202E, U+2066-2069)"
        )
    if value and all(unicodedata.category(c) in _INVISIBLE for c in value):
        raise validation(field, "must contain a visible character (not only zero-width or formatting ones)")
    if len(value) < min_len:
        raise validation(
            field, "must not be empty" if min_len == 1 else f"must be at least {min_len} characters"
        )
    if len(value) > max_len:
        raise validation(field, f"must be at most {max_len} characters")
    return value


def check_name(field: str, value: str) -> str:
    return check_text(field, value, max_len=NAME_MAX)


def check_email(field: str, value: str) -> str:
    value = check_text(field, value, max_len=EMAIL_MAX)
    if not _EMAIL.match(value):
        raise validation(field, "must look like local@domain.tld")
    return value


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(field: str, value: str) -> str:
    value = value.strip()
    if value not in _zones():
        raise validation(field, "must be an IANA time zone name such as Europe/Paris or UTC")
    return value


def check_skills(field: str, skills: dict[str, int]) -> dict[str, int]:
    if len(skills) > SKILLS_MAX:
        raise validation(field, f"at most {SKILLS_MAX} skills")
    out: dict[str, int] = {}
    for name, level in skills.items():
        key = name.strip()
        if not _SKILL.match(key):
            raise validation(f"{field}.{name[:40]}", "skill names are 1-40 characters of a-z, 0-9, _ and -")
        if not 0 <= level <= 10:
            raise validation(f"{field}.{key}", "must be between 0 and 10")
        out[key] = level
    return out


def check_languages(field: str, languages: list[str]) -> list[str]:
    if len(languages) > LANGUAGES_MAX:
        raise validation(field, f"at most {LANGUAGES_MAX} languages")
    out: list[str] = []
    for i, tag in enumerate(languages):
        tag = tag.strip()
        if not _LANGUAGE.match(tag):
            raise validation(f"{field}[{i}]", "must be a BCP 47 language tag such as en or zh-HK")
        if tag not in out:
            out.append(tag)
    return out


def check_e164(field: str, value: str) -> str:
    value = value.strip()
    if not _E164.match(value):
        raise validation(field, "must be an E.164 number: + then 7 to 15 digits, e.g. +15550100")
    return value


def check_endpoint(field: str, value: str | None) -> str | None:
    """Where an agent is reached: None (the browser over WebRTC), a sip:/sips: URI with a host (a softphone
    or desk phone at a static address), or an E.164 number (an outside number, dialled through a trunk)."""
    if value is None:
        return None
    value = check_text(field, value, max_len=ENDPOINT_MAX)
    if value.startswith("+"):
        if not _E164.match(value):
            raise validation(field, "an outside number must be E.164: + then 7 to 15 digits, e.g. +15550100")
        return value
    scheme, sep, rest = value.partition(":")
    if sep and scheme.lower() in ("sip", "sips"):
        value = f"{scheme.lower()}:{rest}"  # schemes are case-insensitive (RFC 3261 19.1.1)
        match = _SIP_URI.match(value)
        if not match:
            raise validation(field, "must be a SIP URI with a host, e.g. sip:ann@pbx.example.com:5060")
        if match.group(1) is not None and not 1 <= int(match.group(1)) <= 65535:
            raise validation(field, "the port must be from 1 to 65535")
        return value
    raise validation(
        field, "must be null (the browser), a sip: or sips: URI, or an E.164 number such as +15550100"
    )
