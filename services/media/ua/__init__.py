"""The user agent: SIP sockets and call set-up (edge, outbound, transport), trunk checks, admission, the
number -> tenant routes, and each call's media logic (call.py). See docs/media.md."""
