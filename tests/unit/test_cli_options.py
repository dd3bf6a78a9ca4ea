"""Every option is declared once, means the same in every command, and reaches Settings.

These walk the real typer application, so a new command or option is checked without a new test.
What they catch that happened before: the cluster options of render/explain/envoy-config/diff/
snapshot had no RECONCILER_* variables (a second, different declaration); --request-timeout had no
variable anywhere; and options were turned into Settings by name, silently dropping any option whose
name was not a setting.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import reconciler.commands.sync
import reconciler.serve
from reconciler.commands.app import app
from reconciler.commands.options import SERVE_OPTIONS, OptionGroup, check_groups, make_settings
from reconciler.settings import ENV_PREFIX, SETTING_NAMES, Settings, env_name

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "policies"
STATE = REPO / "tests" / "golden" / "state" / "bookinfo"
PACKAGE = REPO / "reconciler"

COMMANDS: dict[str, Any] = dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
CLUSTER_OPTIONS = ("kubeconfig", "context", "in_cluster", "request_timeout")
APPLY_OPTIONS = ("force", "prune", "adopt", "max_prune_ratio", "allow_mass_prune")

SETTING_TYPES = {f.name: f.type for f in dataclasses.fields(Settings)}
NOT_SETTINGS = {("snapshot", "path"), ("*", "output")}
"""Options named like a setting that are something else: snapshot's --path is the policy directory
(the setting is the directory inside the repository); -o is each command's own output format."""


def options(command: str) -> dict[str, Any]:
    return {p.name: p for p in COMMANDS[command].params if p.param_type_name == "option"}


def setting_options(command: str) -> dict[str, Any]:
    return {n: p for n, p in options(command).items() if p.envvar and n in SETTING_NAMES}


# --- declarations ---------------------------------------------------------------------------------


def test_option_groups_hold_only_settings() -> None:
    check_groups()  # what importing reconciler.commands.options already did

    @dataclasses.dataclass(frozen=True)
    class Typo(OptionGroup):
        prnue: bool

    with pytest.raises(TypeError, match="prnue is not a Settings field"):
        check_groups((Typo,))
    with pytest.raises(TypeError):  # and were the check skipped, Settings would refuse it
        make_settings(Typo(prnue=False))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_environment_variables_are_settings_of_the_same_name(command: str) -> None:
    for name, param in options(command).items():
        if param.envvar:
            assert param.envvar == env_name(name), (command, name)
            assert name in SETTING_NAMES or name in SERVE_OPTIONS, (command, name)
        elif name in SETTING_NAMES:
            # an option named like a setting without RECONCILER_<NAME> would not be "the same option"
            assert (command, name) in NOT_SETTINGS or ("*", name) in NOT_SETTINGS, (command, name)


def _declaration(param: Any) -> tuple[Any, ...]:
    return (param.opts, param.secondary_opts, param.envvar, param.help, param.default, param.multiple)


def test_cluster_options_are_the_same_in_every_command_that_reads_clusters() -> None:
    readers = sorted(c for c in COMMANDS if "kubeconfig" in options(c))
    assert readers == [
        "config",
        "diff",
        "envoy-config",
        "explain",
        "impact",
        "reconcile",
        "render",
        "serve",
        "snapshot",
    ]
    reference = {n: _declaration(options("reconcile")[n]) for n in CLUSTER_OPTIONS}
    for command in readers:
        assert {n: _declaration(options(command)[n]) for n in CLUSTER_OPTIONS} == reference, command
        assert set(CLUSTER_OPTIONS) <= set(setting_options(command)), command


def test_diff_takes_reconciles_apply_options() -> None:
    for name in APPLY_OPTIONS:
        assert _declaration(options("diff")[name]) == _declaration(options("reconcile")[name]), name


def test_serve_and_config_take_every_option_of_reconcile() -> None:
    reference = {n: _declaration(p) for n, p in options("reconcile").items() if n != "output"}
    for command in ("serve", "config"):
        assert {n: _declaration(options(command)[n]) for n in reference} == reference, command


# --- every setting option reaches Settings, from the flag and from the environment ----------------


def sample(param: Any) -> tuple[list[str], str, Any]:
    """A value unlike the default: (command-line arguments, environment value, expected setting)."""
    if param.is_flag:
        if param.default:
            return [param.secondary_opts[0]], "false", False
        return [param.opts[0]], "true", True
    if param.name in ("prune", "status_snapshot"):
        return [f"{param.opts[0]}=false"], "false", False
    if param.name == "kubeconfig":
        return [param.opts[0], "/a/one:/b/two"], "/a/one:/b/two", ["/a/one", "/b/two"]
    if param.multiple:
        return [param.opts[0], f"x-{param.name}"], f"x-{param.name}", [f"x-{param.name}"]
    if "float" in str(SETTING_TYPES[param.name]):
        return [param.opts[0], "0.25"], "0.25", 0.25
    if "int" in str(SETTING_TYPES[param.name]):
        return [param.opts[0], "3"], "3", 3
    return [param.opts[0], f"x-{param.name}"], f"x-{param.name}", f"x-{param.name}"


class Captured(Exception):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


def capture(settings: Settings, *args: Any, **kwargs: Any) -> Any:
    raise Captured(settings)


@pytest.fixture
def settings_of(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Runs a command and returns the Settings it built (before anything reads clusters or git)."""
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)  # e.g. conftest's RECONCILER_BUILD_CACHE_DIR: only what a test sets
    monkeypatch.setattr(Settings, "resolved", capture)  # render ... diff, snapshot, config
    monkeypatch.setattr(reconciler.commands.sync, "reconcile_once", capture)
    monkeypatch.setattr(reconciler.serve, "Worker", capture)  # imported by the serve command itself
    monkeypatch.setattr(reconciler.commands.sync, "setup_logging", lambda *a: None)
    required = {
        "render": [str(EXAMPLE), "--state", str(STATE)],
        "explain": ["bookinfo-global", str(EXAMPLE), "--from", "us-east-1", "--state", str(STATE)],
        "envoy-config": ["bookinfo-global", str(EXAMPLE), "--from", "us-east-1", "--state", str(STATE)],
        "diff": [str(EXAMPLE), "--state", str(STATE)],
        "impact": [str(EXAMPLE), "--base", str(EXAMPLE), "--state", str(STATE)],
        "snapshot": ["-o", str(tmp_path / "out")],
        "serve": ["--interval", "1s"],
        "reconcile": [],
        "config": [],
    }

    def run(command: str, args: list[str], env: dict[str, str]) -> Settings:
        result = CliRunner().invoke(app, [command, *required[command], *args], env=env)
        assert isinstance(result.exception, Captured), result.output
        return result.exception.settings

    return run


@pytest.mark.parametrize("command", sorted(c for c in COMMANDS if setting_options(c)))
@pytest.mark.parametrize("source", ["flag", "environment"])
def test_every_setting_option_reaches_settings(settings_of: Any, command: str, source: str) -> None:
    samples = {name: sample(param) for name, param in setting_options(command).items()}
    args = [a for cli, _, _ in samples.values() for a in cli] if source == "flag" else []
    env = {env_name(n): value for n, (_, value, _) in samples.items()} if source == "environment" else {}
    got = settings_of(command, args, env)
    expected = dataclasses.replace(Settings(), **{n: value for n, (_, _, value) in samples.items()})
    assert dataclasses.asdict(got) == dataclasses.asdict(expected)


def test_defaults_reach_settings_unchanged(settings_of: Any) -> None:
    for command in sorted(c for c in COMMANDS if setting_options(c)):
        assert settings_of(command, [], {}) == Settings(), command


# --- the package boundary -------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_commands_import_typer_and_nothing_rewrites_signatures() -> None:
    for path in sorted(PACKAGE.rglob("*.py")):
        if PACKAGE / "commands" not in path.parents:
            assert "typer" not in _imports(path) and "click" not in _imports(path), path
        assert "__signature__" not in path.read_text(), path


def test_pass_settings_refuses_a_parameter_that_reaches_no_setting() -> None:
    from reconciler.commands import options as opt

    params = {f.name: None for g in opt.PASS_GROUPS for f in dataclasses.fields(g)}
    params.update(kubeconfig=[], context=[], prune=None, in_cluster=False, request_timeout=1.0)
    with pytest.raises(TypeError, match="parameters new_flag reach no setting"):
        opt.pass_settings({**params, "new_flag": 1})
    with pytest.raises(KeyError, match="repo"):
        opt.pass_settings({k: v for k, v in params.items() if k != "repo"})


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_run_builds_only_its_command_and_it_is_the_same_command(name: str) -> None:
    """``main`` builds only the command a command line names (typer builds every registered command
    on each run): its usage, options and help are those of the full application's command."""
    from reconciler.commands.app import _invoked, build_app

    assert _invoked([name, "--help"]) == name
    assert _invoked(["--version"]) is None and _invoked(["nope", name]) is None
    one = typer.main.get_command(build_app(name))
    assert list(one.commands) == [name]  # type: ignore[attr-defined]
    runner = CliRunner()
    full_help = runner.invoke(app, [name, "--help"], prog_name="reconciler")
    one_help = runner.invoke(build_app(name), [name, "--help"], prog_name="reconciler")
    assert full_help.exit_code == one_help.exit_code == 0
    assert one_help.output == full_help.output
    assert [p.opts for p in one.commands[name].params] == [p.opts for p in COMMANDS[name].params]  # type: ignore[attr-defined]
