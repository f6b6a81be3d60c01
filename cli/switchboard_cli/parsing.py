"""Local parsing and checking of CLI values (skills, requirements, service level, E.164, languages, times).

Plain functions raising ValueError with a readable reason, wrapped as click parameter types so that bad
input fails before any request, as a usage error (exit code 2).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import click

__all__ = [
    "E164",
    "ENDPOINT",
    "LANGUAGES",
    "REQUIREMENTS",
    "SERVICE_LEVEL",
    "SKILLS",
    "TIMESTAMP",
    "is_uuid",
    "parse_e164",
    "parse_endpoint",
    "parse_languages",
    "parse_requirements",
    "parse_service_level",
    "parse_skills",
    "parse_timestamp",
]

_SKILL = re.compile(r"^[a-z0-9_-]{1,40}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# BCP 47 in the shape the API accepts: a 2-3 letter language, then optional subtags (zh-HK, sr-Latn-RS).
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
# Separators people write inside phone numbers; they carry no meaning in E.164.
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")


def _skill_name(raw: str, item: str) -> str:
    name = raw.strip().lower()
    if not _SKILL.match(name):
        raise ValueError(f"{item!r}: skill names are 1-40 of a-z, 0-9, '_' or '-'")
    return name


def _level(raw: str, item: str, what: str) -> int:
    text = raw.strip()
    if not re.fullmatch(r"[0-9]{1,2}", text) or int(text) > 10:
        raise ValueError(f"{item!r}: {what} must be a whole number from 0 to 10")
    return int(text)


def _items(text: str) -> list[str]:
    parts = [part.strip() for part in text.split(",")]
    if any(not part for part in parts) and text.strip():
        raise ValueError(f"{text!r} has an empty item (check the commas)")
    return [part for part in parts if part]


def parse_skills(text: str) -> dict[str, int]:
    """`sales=8,billing=5` -> {"sales": 8, "billing": 5}: an agent's skills with proficiency 0-10."""
    skills: dict[str, int] = {}
    for item in _items(text):
        name, sep, level = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r}: expected SKILL=LEVEL such as sales=8")
        skill = _skill_name(name, item)
        if skill in skills:
            raise ValueError(f"skill {skill!r} is given twice")
        skills[skill] = _level(level, item, "proficiency")
    return skills


def parse_requirements(text: str) -> dict[str, int]:
    """`sales>=5,billing>=3` -> {"sales": 5, "billing": 3}: a queue's minimum proficiency per skill.

    Every skill needs its level (`sales>=0` for any): a bare `sales` is what the shell leaves of an
    unquoted `sales>=5` (it takes `>=5` as a redirection into a file `=5`), so it is refused, not read as 0.
    """
    required: dict[str, int] = {}
    for item in _items(text):
        if ">=" in item:
            name, level = item.split(">=", 1)
            minimum = _level(level, item, "the minimum proficiency")
        elif re.search(r"[<>=]", item):
            raise ValueError(f"{item!r}: expected SKILL>=MIN such as sales>=5")
        else:
            raise ValueError(
                f"{item!r} has no level: write {item.strip()}>=N in quotes, e.g. --skills '{item.strip()}>=5' "
                f"(unquoted, the shell takes >= as a redirection), or '{item.strip()}>=0' for any level"
            )
        skill = _skill_name(name, item)
        if skill in required:
            raise ValueError(f"skill {skill!r} is given twice")
        required[skill] = minimum
    return required


def parse_service_level(text: str) -> tuple[int, int]:
    """`80/20` (or `80%/20s`) -> (80, 20): answer 80 % of contacts within 20 seconds."""
    match = re.fullmatch(r"\s*([0-9]{1,3})\s*%?\s*/\s*([0-9]{1,4})\s*s?\s*", text)
    if not match:
        raise ValueError(f"{text!r}: expected PERCENT/SECONDS such as 80/20")
    percent, seconds = int(match.group(1)), int(match.group(2))
    if not 1 <= percent <= 100:
        raise ValueError(f"{text!r}: the percentage must be from 1 to 100")
    if not 1 <= seconds <= 3600:
        raise ValueError(f"{text!r}: the time must be from 1 to 3600 seconds")
    return percent, seconds


def parse_e164(text: str) -> str:
    """`+1 555-0100` -> `+15550100`; refuses anything that is not an E.164 number."""
    number = _PHONE_PUNCTUATION.sub("", text)
    if number.startswith("00"):
        raise ValueError(f"{text!r}: write the number with a leading + instead of 00 (E.164)")
    if not number.startswith("+"):
        raise ValueError(f"{text!r}: E.164 numbers start with + and the country code, such as +15550100")
    if not _E164.match(number):
        raise ValueError(f"{text!r}: not an E.164 number (+, then 7 to 15 digits, not starting with 0)")
    return number


def parse_endpoint(text: str) -> str:
    """Where an agent is reached: a sip:/sips: URI (the API checks it in full) or an E.164 number."""
    value = text.strip()
    if value.startswith("+"):
        return parse_e164(value)
    scheme, sep, rest = value.partition(":")
    if sep and scheme.lower() in ("sip", "sips") and rest:
        return value
    raise ValueError(
        f"{text!r}: expected a SIP URI such as sip:ann@pbx.example.com or an E.164 number such as +15550100"
    )


def parse_languages(text: str) -> list[str]:
    """`en,zh-HK` -> ["en", "zh-HK"] (BCP 47 tags)."""
    languages: list[str] = []
    for item in _items(text):
        if not _LANGUAGE.match(item):
            raise ValueError(f"{item!r}: expected a BCP 47 language tag such as en or zh-HK")
        if item not in languages:
            languages.append(item)
    return languages


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 date or date-time; without a zone it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r}: expected an ISO 8601 date or time such as 2026-11-01 or 2026-11-01T09:00Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


# `--recording tenant` / `--recording-retention tenant`: clear the queue's own setting (the tenant's applies).
TENANT_SETTING = "tenant"


def parse_recording(text: str) -> int | str:
    """`all` (100), `none` (0), a share `25` or `25%`, or `tenant`."""
    value = text.strip().lower()
    if value in ("all", "none"):
        return 100 if value == "all" else 0
    if value == TENANT_SETTING:
        return TENANT_SETTING
    number = value.removesuffix("%")
    if not number.isdigit() or not 0 <= int(number) <= 100:
        raise ValueError(f"{text!r}: expected all, none, a percentage 0-100 (e.g. 25) or tenant")
    return int(number)


def parse_retention(text: str) -> int | str:
    value = text.strip().lower()
    if value == TENANT_SETTING:
        return TENANT_SETTING
    if not value.isdigit() or not 1 <= int(value) <= 36500:
        raise ValueError(f"{text!r}: expected a number of days 1-36500, or tenant")
    return int(value)


def parse_retention_or_none(text: str) -> int | str:
    """The tenant's retention: days, or `none` (kept until deleted)."""
    if text.strip().lower() == "none":
        return "none"
    value = parse_retention(text)
    if value == TENANT_SETTING:
        raise ValueError("the tenant's retention is a number of days or none")
    return value


class _Parsed(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    """A click type from one of the functions above."""

    def __init__(self, name: str, parse: Any) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SKILLS = _Parsed("SKILL=LEVEL,...", parse_skills)
REQUIREMENTS = _Parsed("SKILL>=MIN,...", parse_requirements)
SERVICE_LEVEL = _Parsed("PERCENT/SECONDS", parse_service_level)
E164 = _Parsed("E164", parse_e164)
ENDPOINT = _Parsed("URI_OR_E164", parse_endpoint)
RECORDING = _Parsed("all|none|PERCENT|tenant", parse_recording)
RETENTION = _Parsed("DAYS|tenant", parse_retention)
RETENTION_OR_NONE = _Parsed("DAYS|none", parse_retention_or_none)
LANGUAGES = _Parsed("LANG,...", parse_languages)
TIMESTAMP = _Parsed("ISO8601", parse_timestamp)
