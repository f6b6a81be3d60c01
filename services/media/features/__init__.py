"""Call features over the bridge and the call core: attended transfer (consult.py), supervisor monitoring
(monitor.py), transfer to an outside number (transfer.py) and voicemail recording (voicemail.py)."""
