"""The admission ticket: what request_validator checked, sealed for the steps behind it.

Every model of the pipeline can be called on its own, over gRPC or HTTP, by anyone who can reach
the server. The steps that do the work (face_generator, the compositor) act only on a ticket that
request_validator issued: the request's checked values (avatar, version, loop position, frames,
the time by which they must be done, their size) with an HMAC-SHA256 under a secret that only this server's
model processes know (an environment variable the launcher sets anew for every start). A call
that did not come through request_validator has no valid ticket and is refused with INVALID_ARG;
the steps read these values from the ticket only, so a caller cannot pair a ticket with others.
"""

import hashlib
import hmac
import os
import secrets
import struct
from dataclasses import dataclass

SECRET_ENV = "LIPSYNC_PIPELINE_SECRET"
_FIELDS = struct.Struct("<qqqqqqqq")  # version, start, first, count, deadline_ns, arrived_ns, width, height
_MAC_BYTES = hashlib.sha256().digest_size


class TicketError(ValueError):
    pass


def new_secret() -> str:
    return secrets.token_hex(32)


def secret() -> bytes:
    """This server's secret, from the environment its launcher gave it."""
    value = os.environ.get(SECRET_ENV, "")
    if len(value) < 32:
        raise RuntimeError(
            f"${SECRET_ENV} is not set: start the server with `lipsync-server serve` or the image's "
            "entrypoint, which set it"
        )
    return value.encode()


@dataclass(frozen=True)
class Ticket:
    avatar: str
    version: int  # 0: the latest
    start: int  # loop position of the clip's frame 0
    first: int  # frames first .. first + count - 1 of the clip are made
    count: int
    deadline_ns: int  # CLOCK_MONOTONIC: its frames done by then, or refused
    arrived_ns: int  # CLOCK_MONOTONIC: when the request reached request_validator
    width: int = 0  # the frames' size; 0: the avatar's own
    height: int = 0

    @property
    def frame_size(self) -> tuple[int, int] | None:
        return (self.width, self.height) if self.width else None

    def seal(self, key: bytes) -> bytes:
        body = _FIELDS.pack(
            self.version, self.start, self.first, self.count, self.deadline_ns, self.arrived_ns, self.width, self.height
        )
        body += self.avatar.encode()
        return body + hmac.new(key, body, hashlib.sha256).digest()

    @classmethod
    def open(cls, sealed: bytes, key: bytes) -> "Ticket":
        """The ticket `sealed` holds; TicketError unless request_validator of this server made it."""
        body, mac = sealed[:-_MAC_BYTES], sealed[-_MAC_BYTES:]
        if len(body) < _FIELDS.size or not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
            raise TicketError(
                "TICKET: not issued by this server's request_validator: the pipeline's steps serve "
                "requests to the 'lipsync' ensemble only"
            )
        version, start, first, count, deadline_ns, arrived_ns, width, height = _FIELDS.unpack_from(body)
        return cls(body[_FIELDS.size :].decode(), version, start, first, count, deadline_ns, arrived_ns, width, height)
