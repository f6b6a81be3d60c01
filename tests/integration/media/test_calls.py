"""Calls over real sockets against the media service subprocess: apology audible, limits, CANCEL, BYE."""

from __future__ import annotations

import secrets

import numpy as np

from .sipclient import RtpReceiver, UdpSip, header, request, sdp, status_of


def _invite(client: UdpSip, number: str, port: int, rtp_port: int, **kw) -> tuple[bytes, str, str]:
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    msg = request(
        "INVITE",
        f"sip:{number}@127.0.0.1:{port}",
        local_port=client.local_port,
        call_id=call_id,
        from_tag=tag,
        body=sdp(rtp_port),
        **kw,
    )
    client.send(msg)
    return msg, call_id, tag


def test_unknown_number_gets_404(media_edge) -> None:
    client = UdpSip(media_edge.port)
    _invite(client, "+19995550000", media_edge.port, 4000)
    final = client.recv_final()
    assert final is not None and status_of(final) == 404
    client.close()


def test_apology_is_audible_and_the_edge_hangs_up(media_edge) -> None:
    client, rtp = UdpSip(media_edge.port), RtpReceiver()
    _, call_id, tag = _invite(client, media_edge.number, media_edge.port, rtp.port)
    final = client.recv_final(5.0)
    assert final is not None and status_of(final) == 200, final
    to_tag = header(final, "To").split("tag=")[1]
    client.send(
        request(
            "ACK",
            f"sip:{media_edge.number}@127.0.0.1",
            local_port=client.local_port,
            call_id=call_id,
            from_tag=tag,
            to_tag=to_tag,
        )
    )
    rtp.receive_for(2.5)
    pcm = rtp.pcm(0).astype(np.float64)
    assert len(pcm) > 8000 * 2, "at least 2 s of audio arrived"
    rms = np.sqrt(np.mean(pcm**2))
    assert rms > 300, f"the apology should be speech, rms={rms:.0f}"
    # Then the edge sends BYE: answer it.
    bye = None
    for _ in range(40):
        data = client.recv(0.25)
        if data is not None and data.startswith(b"BYE "):
            bye = data
            break
    assert bye is not None, "the edge releases the call after the apology"
    client.close()
    rtp.close()


def test_tenant_call_limit_gets_486(media_edge) -> None:
    client = UdpSip(media_edge.port)
    _invite(client, media_edge.busy_tenant_number, media_edge.port, 4000)
    final = client.recv_final()
    assert final is not None and status_of(final) == 486
    client.close()


def test_cancel_gets_200_and_487(media_edge) -> None:
    client = UdpSip(media_edge.port)
    branch = "z9hG4bKcancel" + secrets.token_hex(4)
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    uri = f"sip:{media_edge.flow_number}@127.0.0.1:{media_edge.port}"
    client.send(
        request(
            "INVITE",
            uri,
            local_port=client.local_port,
            call_id=call_id,
            from_tag=tag,
            body=sdp(4002),
            via_branch=branch,
        )
    )
    got = []
    for _ in range(10):
        data = client.recv(1.0)
        assert data is not None
        got.append(status_of(data))
        if status_of(data) == 180:
            break
    assert 180 in got
    client.send(
        request(
            "CANCEL", uri, local_port=client.local_port, call_id=call_id, from_tag=tag, via_branch=branch
        ).replace(b"CSeq: 1 CANCEL", b"CSeq: 1 CANCEL")
    )
    statuses = {status_of(m): m for m in client.collect(1.0)}
    assert 200 in statuses and b"CANCEL" in statuses[200]
    assert 487 in statuses
    client.close()


def test_bye_for_unknown_dialog_gets_481(media_edge) -> None:
    client = UdpSip(media_edge.port)
    client.send(
        request("BYE", f"sip:{media_edge.number}@127.0.0.1", local_port=client.local_port, to_tag="nosuch")
    )
    final = client.recv_final()
    assert final is not None and status_of(final) == 481
    client.close()
