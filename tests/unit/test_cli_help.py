"""Every verb (and every subcommand of a group verb) answers ``--help`` with its usage and
options, exit 0; unknown options are refused in docker's words. In-process: ``--help`` never
reaches the daemon."""

import importlib

import pytest

from aiorun.cli.main import VERBS, _main
from aiorun.cli.options import Group, Verb


def _target(verb):
    modname, func = VERBS[verb].split(":")
    return getattr(importlib.import_module(f"aiorun.cli.{modname}"), func)


def _group(verb):
    """The Group behind a group verb (``network`` → network_group()), or None."""
    mod = importlib.import_module(f"aiorun.cli.{VERBS[verb].split(':')[0]}")
    builder = getattr(mod, f"{verb}_group", None)
    return builder() if builder else None


def _every_verb():
    for verb in VERBS:
        target = _target(verb)
        if isinstance(target, Verb):
            yield [verb], target
            continue
        group = _group(verb)
        if group is not None:
            for sub, v in group.subs.items():
                yield [verb, sub], v
        elif verb != "serve":
            raise AssertionError(f"{verb}: neither a Verb nor a group verb")


EVERY_VERB = list(_every_verb())


def test_every_verb_is_covered():
    names = {" ".join(words) for words, _ in EVERY_VERB}
    assert {"ps", "top", "run", "exec", "container ls", "network create", "volume rm",
            "image ls", "system df", "events", "commit", "build"} <= names
    assert len(names) > 50


@pytest.mark.parametrize("words,verb", EVERY_VERB, ids=[" ".join(w) for w, _ in EVERY_VERB])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_the_verbs_options(capsys, words, verb, flag):
    if flag == "-h" and "-h" in verb.command.by_name:       # run -h HOSTNAME, as docker
        flag = "--help"
    assert _main(words + [flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage:  aiorun {' '.join(words)}"), out
    for opt in verb.command.options:
        if not opt.hidden:
            long_name = next(n for n in opt.names if n.startswith("--"))
            assert long_name in out and opt.help.split()[0] in out, (opt.names, out)
    if verb.command.interspersed:    # --help wins wherever it is among the options
        assert _main(words + ["x", "--help"]) == 0


@pytest.mark.parametrize("words,verb", EVERY_VERB, ids=[" ".join(w) for w, _ in EVERY_VERB])
def test_unknown_option_is_refused(capsys, words, verb):
    status = _main(words + ["--no-such-option"])
    err = capsys.readouterr().err
    assert status == verb.command.usage_status != 0
    assert "unknown flag: --no-such-option" in err
    assert f"See 'aiorun {' '.join(words)} --help'." in err


@pytest.mark.parametrize("verb", ["container", "image", "network", "volume", "system"])
def test_group_help_lists_its_commands(capsys, verb):
    assert _main([verb, "--help"]) == 0
    out = capsys.readouterr().out
    group = _group(verb)
    assert isinstance(group, Group)
    for sub in group.subs:
        assert f"  {sub} " in out
    assert _main([verb, "frobnicate"]) == 1
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_serve_help(capsys):
    assert _main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--storage-driver" in out and "--backend" in out and "--debug" in out


@pytest.mark.parametrize("argv", [["top", "--help"], ["ps", "--help"], ["rename", "-h"]])
def test_formerly_wrong_answers(capsys, argv):
    """Before: `ps --help` → "unknown flag: --help", `top --help` looked up a container."""
    assert _main(argv) == 0
    assert capsys.readouterr().out.startswith(f"Usage:  aiorun {argv[0]}")
