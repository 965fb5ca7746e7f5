"""The telephony tests drive sipd with the same code as `appliancectl bench sip`."""

from appliance.bench.sipdrive import (  # noqa: F401
    PCAPS,
    SIPP_DIR,
    EventLog,
    Sipd,
    free_port,
    pcap_rtp_payloads,
    sipp,
    sipp_counts,
    sipp_lost,
)


def held_call(port: int, where, hold_ms: int, **kw):
    """SIPp as a PBX: one call to ``port`` held ``hold_ms``, its ACK and BYE along the route set
    (uac_via_front.xml), so straight to sipd and through the Kamailio front alike; what it sent
    and got is in ``where``/pbx.log. Keywords go to ``sipp``."""
    extra = ["-d", str(hold_ms), "-trace_msg", "-message_file", f"{where}/pbx.log", *kw.pop("extra", [])]
    return sipp("uac_via_front.xml", port, cwd=str(where), extra=extra, **kw)
