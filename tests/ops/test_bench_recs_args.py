"""``python -m benchmarks.recs``: what to measure is chosen on the command line; a bad choice is named."""

from __future__ import annotations

import pytest

from benchmarks.recs import parse_args


def test_endpoints_modes_and_scoring_threads_are_parsed():
    args = parse_args(["--endpoints", "live, plain JSON", "--modes", "paced", "--serving-threads", "0"])
    assert args.endpoints == ["live", "plain JSON"] and args.modes == ["paced"] and args.serving_threads == 0
    default = parse_args([])
    assert default.endpoints == ["live", "popularity", "plain JSON"] and default.modes == ["paced", "closed loop"]
    assert default.serving_threads is None  # the deployed setting


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--endpoints", "live,everything"], "--endpoints: everything not one of live, popularity, plain JSON"),
        (["--endpoints", ","], "--endpoints: nothing given"),
        (["--modes", "open"], "--modes: open not one of paced, closed loop"),
        (["--serving-threads", "-1"], "--serving-threads must be 0 or more, got -1"),
    ],
)
def test_a_bad_choice_stops_with_the_flag_named(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_args(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err
