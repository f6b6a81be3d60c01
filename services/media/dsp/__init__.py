"""Signal processing for the media path: in-band DTMF detection and tone synthesis."""

from __future__ import annotations

from services.media.dsp.dtmf import Digit, DtmfBank, DtmfConfig, DtmfDetector
from services.media.dsp.tones import dtmf_tone

__all__ = ["Digit", "DtmfBank", "DtmfConfig", "DtmfDetector", "dtmf_tone"]
