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
