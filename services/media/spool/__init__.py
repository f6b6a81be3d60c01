"""The recording tap's crash-safe local spool (two G.711 channels, chunked and fsynced) and its reader."""

from __future__ import annotations

from services.media.spool.spool import (
    RecordKind,
    RecordReader,
    SpoolContents,
    SpoolError,
    SpoolWriter,
    parse_records,
    read_spool,
    wait_written,
    wav_bytes,
    wav_header,
    write_wav,
)

__all__ = [
    "RecordKind",
    "RecordReader",
    "SpoolContents",
    "SpoolError",
    "SpoolWriter",
    "parse_records",
    "read_spool",
    "wait_written",
    "wav_bytes",
    "wav_header",
    "write_wav",
]
