"""The admission ticket (lipsync_server/backend/ticket.py): what request_validator sealed opens
only under the same server's secret, unchanged."""

import pytest

from lipsync_server.backend.ticket import Ticket, TicketError

KEY = b"k" * 64
ISSUED = Ticket("demo", 2, 40, 10, 5, 123_456_789, 100)


def test_a_sealed_ticket_opens_to_what_was_sealed():
    assert Ticket.open(ISSUED.seal(KEY), KEY) == ISSUED


@pytest.mark.parametrize(
    "sealed",
    [
        ISSUED.seal(b"another server's secret, 64 bytes long........................."),
        b"",
        b"short",
        ISSUED.seal(KEY)[:-1],
    ],
    ids=["another secret", "empty", "short", "truncated"],
)
def test_anything_else_is_refused(sealed):
    with pytest.raises(TicketError, match="TICKET: not issued by this server's request_validator"):
        Ticket.open(sealed, KEY)


@pytest.mark.parametrize("offset", [0, 24, 40, 48])  # version, count, deadline, avatar
def test_a_changed_byte_is_refused(offset):
    sealed = bytearray(ISSUED.seal(KEY))
    sealed[offset] ^= 0x40
    with pytest.raises(TicketError):
        Ticket.open(bytes(sealed), KEY)
