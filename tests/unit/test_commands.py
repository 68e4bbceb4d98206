"""What users write in ctx.run becomes the ExeScript yagna expects; env works through a shell wrapper."""
import subprocess

import pytest

from golem_sync import GolemConfigError
from golem_sync._work.commands import build_run


def test_shell_form_runs_through_sh():
    run = build_run("echo hi")
    assert run.to_json() == {"run": {"entry_point": "/bin/sh", "args": ["-c", "echo hi"],
                                     "capture": {"stdout": {"atEnd": {"format": "str"}},
                                                 "stderr": {"atEnd": {"format": "str"}}}}}


def test_exe_form_runs_directly():
    run = build_run("/bin/echo", ["a b", "c"])
    assert run.entry_point == "/bin/echo" and list(run.args) == ["a b", "c"]
    assert build_run(["/bin/echo", "x"]).entry_point == "/bin/echo"


def _execute(run):
    return subprocess.run([run.entry_point, *run.args], capture_output=True, text=True, check=True).stdout


def test_env_reaches_a_shell_command_when_executed_by_a_real_shell():
    run = build_run("printf '%s|%s' \"$GREETING\" \"$OTHER\"", env={"GREETING": "it's \"q\" $HOME", "OTHER": "x"})
    assert _execute(run) == "it's \"q\" $HOME|x"


def test_env_reaches_an_executable_and_its_args_stay_literal():
    run = build_run("/usr/bin/env", [], env={"GREETING": "hello world"})
    assert "GREETING=hello world\n" in _execute(run)
    literal = build_run("/usr/bin/printf", ["%s", "$GREETING"], env={"GREETING": "x"})
    assert _execute(literal) == "$GREETING"


@pytest.mark.parametrize("kwargs, fragment", [
    ({"command": "   "}, "empty"),
    ({"command": "ls", "env": {"1BAD": "x"}}, "invalid environment variable name"),
    ({"command": "ls", "env": {"A": 1}}, "must be a string"),
    ({"command": ["ls"], "args": ["x"]}, "not both"),
])
def test_bad_commands_are_config_errors(kwargs, fragment):
    with pytest.raises(GolemConfigError, match=fragment):
        build_run(kwargs.pop("command"), kwargs.pop("args", None), **kwargs)
