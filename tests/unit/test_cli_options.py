"""The one option parser (aiorun.cli.options): docker's syntax, declared options only."""

import pytest

from aiorun.cli.options import (BOOL, LIST, STR, Command, HelpRequested, Option, UsageError,
                                filters, kv_pairs, need)

CMD = Command("demo", "ARG...", "A demo verb", [
    Option("-a --all", BOOL, "all"), Option("-n --name", STR, "name"),
    Option("-e --env", LIST, "env"), Option("--depth", STR, "depth", default="1"),
    Option("--old-spelling", BOOL, "old", hidden=True)])


@pytest.mark.parametrize("argv,want,rest", [
    ([], {"all": False, "name": None, "env": [], "depth": "1"}, []),
    (["-a", "x"], {"all": True}, ["x"]),
    (["x", "-a", "y"], {"all": True}, ["x", "y"]),
    (["-an", "web"], {"all": True, "name": "web"}, []),
    (["-nweb"], {"name": "web"}, []),
    (["-n=web"], {"name": "web"}, []),
    (["--name=a=b"], {"name": "a=b"}, []),
    (["-e", "A=1", "--env", "B=2", "-eC=3"], {"env": ["A=1", "B=2", "C=3"]}, []),
    (["--all=false"], {"all": False}, []),
    (["-a=false"], {"all": False}, []),
    (["--", "-a"], {"all": False}, ["-a"]),
    (["-5"], {}, ["-5"]),                               # a negative number is an argument
    (["--old-spelling"], {"old_spelling": True}, []),
])
def test_parse(argv, want, rest):
    opts, args = CMD.parse(argv)
    assert args == rest
    for k, v in want.items():
        assert opts[k] == v and getattr(opts, k) == v


def test_options_end_at_the_first_argument_when_not_interspersed():
    cmd = Command("run", "", "", [Option("-d", BOOL, "d")], interspersed=False)
    assert cmd.parse(["-d", "img", "-d"])[1] == ["img", "-d"]


@pytest.mark.parametrize("argv,msg", [
    (["--bogus"], "unknown flag: --bogus"),
    (["-x"], "unknown shorthand flag: 'x' in -x"),
    (["-ax"], "unknown shorthand flag: 'x' in -ax"),
    (["--name"], "flag needs an argument: --name"),
    (["-n"], "flag needs an argument: 'n' in -n"),
])
def test_refused(argv, msg):
    with pytest.raises(UsageError, match=msg):
        CMD.parse(argv)


def test_help_and_h():
    for argv in (["--help"], ["x", "--help"], ["-h"]):
        with pytest.raises(HelpRequested):
            CMD.parse(argv)
    h = Command("run", "", "", [Option("-h --hostname", STR, "host")])
    assert h.parse(["-h", "box"])[0].hostname == "box"      # -h is the verb's own option
    text = CMD.help()
    assert text.startswith("Usage:  aiorun demo [OPTIONS] ARG...\n\nA demo verb\n")
    assert "  -a, --all" in text and "      --depth string" in text
    assert "--old-spelling" not in text


def test_a_misspelt_option_name_raises():
    opts, _ = CMD.parse([])
    with pytest.raises(AttributeError, match="alll"):
        opts.alll


def test_key_value_parsers():
    assert kv_pairs(["a=1", "b", "c=x=y"], "label") == {"a": "1", "b": "", "c": "x=y"}
    with pytest.raises(UsageError, match="invalid label"):
        kv_pairs(["=v"], "label")
    assert filters(["a=1", "a=2", "b="]) == {"a": ["1", "2"], "b": [""]}
    for bad in ("a", "=x"):
        with pytest.raises(UsageError, match="bad format of filter"):
            filters([bad])


def test_need():
    need(["a"], "x", 1, 1)
    with pytest.raises(UsageError, match='"x" requires exactly 2 arguments'):
        need(["a"], "x", 2, 2)
    with pytest.raises(UsageError, match='"x" requires at least 1 argument'):
        need([], "x", 1)
    with pytest.raises(UsageError, match='"x" requires at most 1 argument'):
        need(["a", "b"], "x", 0, 1)
