"""The shop's access logger writes the line gunicorn's own logger writes, for any format."""

from __future__ import annotations

import datetime
import logging

import pytest
from gunicorn import glogging
from gunicorn.config import Config

from shop.ops.access_log import AccessLogger, format_atoms

FORMATS = [
    None,  # gunicorn's default (the shop's)
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(B)s "%(f)s" "%(a)s" %(T)s %(D)s %(M)s %(L)s %(p)s',
    "%(m)s %(U)s ?%(q)s %(H)s %({X-Request-Id}i)s %({content-type}o)s %({wsgi.url_scheme}e)s %({absent}i)s",
    '%(s)s "%({user-agent}i)s" %(not_an_atom)s %(h)s %(h)s',
]


class _Resp:
    status = "201 Created"
    sent = 1234
    headers = [("Content-Type", "text/html; charset=utf-8"), ("X-Frame-Options", "DENY")]


class _Req:
    headers = [("HOST", "shop.test"), ("USER-AGENT", 'curl/8 "quoted"'), ("X-REQUEST-ID", "abc-1")]


ENVIRON = {
    "REMOTE_ADDR": "10.0.0.7",
    "REQUEST_METHOD": "GET",
    "RAW_URI": "/products/7/lamp/?from=rail",
    "PATH_INFO": "/products/7/lamp/",
    "QUERY_STRING": "from=rail",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_REFERER": "http://shop.test/",
    "HTTP_USER_AGENT": 'curl/8 "quoted"',
    "HTTP_AUTHORIZATION": "Basic dXNlcjpwdw==",
    "wsgi.url_scheme": "https",
}


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _line(logger_cls: type[glogging.Logger], fmt: str | None) -> str:
    cfg = Config()
    cfg.set("accesslog", "-")
    if fmt is not None:
        cfg.set("access_log_format", fmt)
    logger = logger_cls(cfg)
    logger.now = lambda: "[04/Dec/2026:15:00:00 +0000]"
    capture = _Capture()
    logger.access_log.handlers = [capture]
    logger.access(_Resp(), _Req(), dict(ENVIRON), datetime.timedelta(seconds=1, microseconds=234567))
    assert len(capture.lines) == 1
    return capture.lines[0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_line_is_the_one_gunicorn_writes(fmt):
    ours, theirs = _line(AccessLogger, fmt), _line(glogging.Logger, fmt)
    assert ours == theirs


def test_the_default_line():
    assert _line(AccessLogger, None) == (
        '10.0.0.7 - user [04/Dec/2026:15:00:00 +0000] "GET /products/7/lamp/?from=rail HTTP/1.1" 201 1234 '
        '"http://shop.test/" "curl/8 \\"quoted\\""'
    )


def test_only_the_atoms_a_format_names_are_built():
    plain, braced = format_atoms(FORMATS[2])
    assert plain == ("m", "U", "q", "H")
    assert braced == (
        ("{x-request-id}i", "i", "x-request-id"),
        ("{content-type}o", "o", "content-type"),
        ("{wsgi.url_scheme}e", "e", "wsgi.url_scheme"),
        ("{absent}i", "i", "absent"),
    )
    atoms = AccessLogger(Config()).atoms(_Resp(), _Req(), ENVIRON, datetime.timedelta(0))
    assert set(atoms) == {"h", "l", "u", "t", "r", "s", "b", "f", "a"}  # the default format's nine


def test_gunicorn_is_configured_with_it():
    from shop.ops import gunicorn_conf

    assert gunicorn_conf.logger_class == "shop.ops.access_log.AccessLogger"
