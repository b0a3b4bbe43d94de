"""gunicorn's access log, built from the atoms its format names only.

gunicorn's ``Logger.atoms`` builds every atom for every request before formatting one line: about twenty
fixed ones plus one per request header, response header and WSGI environ entry (some forty on a page),
then copies them all into a ``SafeAtoms``. The default format uses nine. :class:`AccessLogger` builds
the ones ``access_log_format`` names (worked out once per format) with gunicorn's own definitions, so a
line is the one gunicorn writes, for any format; README "Serving" has the measurement.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

from gunicorn import glogging

_NAME = re.compile(r"%\(([^)]+)\)")


@lru_cache(maxsize=8)
def format_atoms(fmt: str) -> tuple[tuple[str, ...], tuple[tuple[str, str, str], ...]]:
    """(plain atoms, (key, kind, name) of header and environ atoms) that ``fmt`` names.

    Kinds: ``i`` a request header, ``o`` a response header, ``e`` an environ entry; names lower-cased,
    as gunicorn's ``SafeAtoms`` looks them up."""
    plain: list[str] = []
    braced: list[tuple[str, str, str]] = []
    for name in dict.fromkeys(_NAME.findall(fmt)):
        if name.startswith("{"):
            key = name.lower()
            if len(key) > 3 and key[-2] == "}" and key[-1] in "ioe":
                braced.append((key, key[-1], key[1:-2]))
        else:
            plain.append(name)
    return tuple(plain), tuple(braced)


class AccessLogger(glogging.Logger):
    """gunicorn's logger; its access lines skip the atoms their format does not name."""

    def atoms(self, resp, req, environ, request_time):
        plain, braced = format_atoms(self.cfg.access_log_format)
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        atoms: dict = {}
        for name in plain:
            if name == "h":
                atoms[name] = environ.get("REMOTE_ADDR", "-")
            elif name == "l":
                atoms[name] = "-"
            elif name == "u":
                atoms[name] = self._get_user(environ) or "-"
            elif name == "t":
                atoms[name] = self.now()
            elif name == "r":
                atoms[name] = f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}"
            elif name == "s":
                atoms[name] = status
            elif name == "m":
                atoms[name] = environ.get("REQUEST_METHOD")
            elif name == "U":
                atoms[name] = environ.get("PATH_INFO")
            elif name == "q":
                atoms[name] = environ.get("QUERY_STRING")
            elif name == "H":
                atoms[name] = environ.get("SERVER_PROTOCOL")
            elif name == "b":
                atoms[name] = getattr(resp, "sent", None) is not None and str(resp.sent) or "-"
            elif name == "B":
                atoms[name] = getattr(resp, "sent", None)
            elif name == "f":
                atoms[name] = environ.get("HTTP_REFERER", "-")
            elif name == "a":
                atoms[name] = environ.get("HTTP_USER_AGENT", "-")
            elif name == "T":
                atoms[name] = request_time.seconds
            elif name == "D":
                atoms[name] = request_time.seconds * 1000000 + request_time.microseconds
            elif name == "M":
                atoms[name] = request_time.seconds * 1000 + int(request_time.microseconds / 1000)
            elif name == "L":
                atoms[name] = f"{request_time.seconds:d}.{request_time.microseconds:06d}"
            elif name == "p":
                atoms[name] = f"<{os.getpid()}>"
        if braced:
            sources = {
                "i": req.headers if hasattr(req, "headers") else req,
                "o": resp.headers,
                "e": environ,
            }
            for key, kind, wanted in braced:
                pairs = sources[kind]
                pairs = pairs.items() if hasattr(pairs, "items") else pairs
                for k, v in pairs:  # the last of a repeated header wins, as in gunicorn's dict
                    if k.lower() == wanted:
                        atoms[key] = v
        return atoms
