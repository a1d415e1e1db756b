"""The Dockerfile language, with BuildKit's parser semantics. Pure; no I/O.

* :mod:`.lines` — physical lines → logical lines: ``\\n``-only line ends, parser directives
  (``# escape=``), continuations, comments, heredoc bodies.
* :mod:`.parser` — logical lines → :class:`Instruction` (keyword, flags, args as BuildKit
  splits them, start/end line, heredocs) and every parse-time check; :func:`parse`.
* :mod:`.config` — the metadata instructions' effect on an image config, RUN/CMD argv,
  ``commit --change``.
* Word expansion (quotes, escapes, ``$VAR`` and ``${VAR...}`` forms) is in
  :mod:`aiorun.images.build.expand`, re-exported here.
"""

from aiorun.images.build.dockerfile.config import (COMMIT_CHANGES, DEFAULT_SHELL, EXPANDED,
                                                   METADATA, apply_metadata, arg_pairs,
                                                   command_form, env_dict, healthcheck,
                                                   heredoc_script, heredoc_script_path,
                                                   key_values, parse_changes, parse_duration,
                                                   parse_ports, set_env)
from aiorun.images.build.dockerfile.lines import Heredoc
from aiorun.images.build.dockerfile.parser import (KNOWN, DockerfileError, Instruction, parse,
                                                   parse_nodes, parse_words, split_command)
from aiorun.images.build.expand import expand_word, expand_words

__all__ = ["COMMIT_CHANGES", "DEFAULT_SHELL", "EXPANDED", "KNOWN", "METADATA", "DockerfileError",
           "Heredoc", "Instruction", "apply_metadata", "arg_pairs", "command_form",
           "env_dict", "expand_word", "expand_words", "healthcheck", "heredoc_script",
           "heredoc_script_path", "key_values", "parse", "parse_nodes", "parse_changes", "parse_duration",
           "parse_ports", "parse_words", "set_env", "split_command"]
