"""What the platform itself says to a caller waiting in a queue, in the tenant's language: the position
and expected wait announcement, the message of a closed queue, and the goodbye once a call back is agreed.
One place for the IVR's nodes and the contact coordinator (which keeps every caller in line company), so
both say the same thing the same way."""

from __future__ import annotations

import uuid

from .events import MediaPlay

__all__ = ["CALLBACK_DONE", "LANGUAGES", "closed_play", "position_play", "position_text", "voice_of"]

# A call back agreed (a callback node, or a queue's offer) and nowhere else to go in the flow: goodbye.
CALLBACK_DONE = "Thank you. We will call you back. Goodbye."

# Tenant language -> espeak-ng voice.
LANGUAGES = {"en": "en-us", "fr": "fr-fr", "es": "es", "de": "de"}

_THANKS = {
    "en": "Thank you for waiting. Your call is important to us.",
    "fr": "Merci de patienter. Votre appel est important pour nous.",
    "es": "Gracias por esperar. Su llamada es importante para nosotros.",
    "de": "Vielen Dank für Ihre Geduld. Ihr Anruf ist uns wichtig.",
}
_POSITION = {
    "en": "You are number {n} in line.",
    "fr": "Vous êtes numéro {n} dans la file.",
    "es": "Usted es el número {n} en la fila.",
    "de": "Sie sind Nummer {n} in der Warteschlange.",
}
# (one minute, several minutes)
_WAIT = {
    "en": ("The expected wait is about 1 minute.", "The expected wait is about {m} minutes."),
    "fr": ("L'attente prévue est d'environ 1 minute.", "L'attente prévue est d'environ {m} minutes."),
    "es": (
        "La espera prevista es de aproximadamente 1 minuto.",
        "La espera prevista es de unos {m} minutos.",
    ),
    "de": (
        "Die erwartete Wartezeit beträgt etwa 1 Minute.",
        "Die erwartete Wartezeit beträgt etwa {m} Minuten.",
    ),
}
_CLOSED = {
    "en": "We are closed now. Please call again during our opening hours. Goodbye.",
    "fr": "Nous sommes fermés. Merci de rappeler pendant nos heures d'ouverture. Au revoir.",
    "es": "Ahora estamos cerrados. Por favor, llame durante nuestro horario de atención. Adiós.",
    "de": "Wir haben geschlossen. Bitte rufen Sie während unserer Öffnungszeiten wieder an. Auf Wiederhören.",
}


def _lang(language: str) -> str:
    return language if language in LANGUAGES else "en"


def voice_of(language: str) -> str:
    return LANGUAGES[_lang(language)]


def position_text(position: int | None, expected_wait_s: float | None, language: str = "en") -> str:
    """ "You are number 3 in line. The expected wait is about 2 minutes." (a thank-you while unknown)."""
    lang = _lang(language)
    if position is None:
        return _THANKS[lang]
    text = _POSITION[lang].format(n=position)
    if expected_wait_s is not None:
        minutes = max(1, round(expected_wait_s / 60))
        one, several = _WAIT[lang]
        text += " " + (one if minutes == 1 else several.format(m=minutes))
    return text


def position_play(
    *,
    tenant_id: uuid.UUID,
    call_id: uuid.UUID,
    position: int | None,
    expected_wait_s: float | None,
    language: str,
    id: uuid.UUID,
    ts: float,
) -> MediaPlay:
    """The announcement as a media command (the caller's music stops for it; the sender restarts it)."""
    return MediaPlay(
        tenant_id=tenant_id,
        call_id=call_id,
        text=position_text(position, expected_wait_s, language),
        voice=voice_of(language),
        id=id,
        ts=ts,
    )


def closed_play(
    *, tenant_id: uuid.UUID, call_id: uuid.UUID, message: str | None, language: str, id: uuid.UUID, ts: float
) -> MediaPlay:
    """The queue's closed message (its own text, else the platform's in the tenant's language)."""
    return MediaPlay(
        tenant_id=tenant_id,
        call_id=call_id,
        text=message or _CLOSED[_lang(language)],
        voice=voice_of(language),
        id=id,
        ts=ts,
    )
