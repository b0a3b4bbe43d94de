"""Django's PostgreSQL backend, with a connection check that does not cost a round trip when it needn't.

With ``CONN_HEALTH_CHECKS``, Django checks a persistent connection at its first use in each request by
sending ``SELECT 1`` and waiting for the answer. On a page whose only statement is the header's cart read
(a category or search page of a shopper with a cart) that check doubled the round trips: one more wait for
the server and, under load, one more wait for a core at each end.

Here the check first asks the socket, without waiting: a connection the server closed (a restart, an
administrator's ``pg_terminate_backend``, ``idle_session_timeout``) has said so before closing (an error
message and end of file), so its socket is readable. A quiet socket on an idle connection is taken as
healthy and costs one ``poll`` call; anything else (readable, an error on the socket, a transaction left
open, a connection psycopg already knows is broken) gets Django's own ``SELECT 1``, which closes the
connection when that fails. What a quiet socket cannot show is a peer that vanished without a word (a
network path cut without a reset); the first statement then fails as it would have without the check,
and Django drops the connection at the end of that request (the same idea as the MySQL Go driver's
non-blocking read before reusing a connection).
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base as postgresql
from psycopg import pq

_UNSETTLED = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | select.POLLNVAL


def socket_quiet(conn) -> bool:
    """Whether ``conn`` (a psycopg connection) is open, idle, and has nothing unread on its socket."""
    if conn.closed or conn.broken:
        return False
    pgconn = conn.pgconn
    if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return False
    try:
        fd = pgconn.socket
    except Exception:  # psycopg raises when the connection has no socket any more
        return False
    poller = select.poll()
    poller.register(fd, _UNSETTLED)
    return not poller.poll(0)


class DatabaseWrapper(postgresql.DatabaseWrapper):
    def close_if_health_check_failed(self):
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and not self.pool
            and socket_quiet(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
