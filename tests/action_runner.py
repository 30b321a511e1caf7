"""Run a composite action (action.yml) or a workflow job the way GitHub Actions runs them, as far
as one machine can: each `run:` step in order with `bash --noprofile --norc -eo pipefail`, the
`${{ }}` expressions of `env:`, `with:` and `if:` evaluated from the contexts, inputs with their
defaults, $GITHUB_OUTPUT / $GITHUB_ENV / $GITHUB_PATH / $GITHUB_STEP_SUMMARY as files read back
between steps, a failed step skipping the rest unless `if: always()`. Composite actions get no
INPUT_* variables from GitHub: only what their steps map in `env:`.

`uses:` steps of a workflow run a local composite action (`./path`) here, and anything else
through a handler the caller gives for it (actions/checkout, actions/setup-python, ...).

    python tests/action_runner.py action.yml -i ticket=7 -i pr=false   # one action, here
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}", re.S)
BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]  # Actions' `shell: bash`


class ActionError(Exception):
    """The action or workflow is something GitHub would refuse, or this runner cannot run."""


@dataclass
class Step:
    name: str
    outcome: str  # success | failure | skipped
    code: int = 0
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    steps: list[Step]
    outputs: dict[str, str]
    summary: str = ""

    @property
    def ok(self) -> bool:
        return all(s.outcome != "failure" for s in self.steps)


# --- expressions -----------------------------------------------------------------------------


def _value(term: str, context: Mapping[str, Any]) -> Any:
    term = term.strip()
    if term.startswith("'") and term.endswith("'"):
        return term[1:-1].replace("''", "'")
    if term in ("true", "false"):
        return term == "true"
    if re.fullmatch(r"-?\d+(\.\d+)?", term):
        return term
    node: Any = context
    for part in term.split("."):
        if not isinstance(node, Mapping):
            raise ActionError(f"cannot evaluate {term!r}: {part!r} of a non-object")
        if part not in node:
            # GitHub gives '' for a missing property of a context it has; a context it has not,
            # or a misspelt input, is a mistake worth failing on here.
            if node is context or term.startswith("inputs."):
                raise ActionError(f"unknown {term!r} in an expression")
            return ""
        node = node[part]
    return node


def evaluate_expression(expression: str, context: Mapping[str, Any]) -> Any:
    """The subset action.yml and the example workflows use: property paths, literals, `||`,
    `==`/`!=`, and the status functions."""
    expression = expression.strip()
    status = {"always()": True, "success()": context.get("_ok", True),
              "failure()": not context.get("_ok", True)}  # fmt: skip
    if expression in status:
        return status[expression]
    if "||" in expression:
        for part in expression.split("||"):
            value = evaluate_expression(part, context)
            if value not in ("", None, False):
                return value
        return value
    for op in ("==", "!="):
        if op in expression:
            left, right = (str(evaluate_expression(p, context)) for p in expression.split(op, 1))
            return (left == right) == (op == "==")
    return _value(expression, context)


def evaluate(text: str, context: Mapping[str, Any]) -> str:
    """`text` with each `${{ }}` replaced by its value."""
    def one(match: re.Match) -> str:
        value = evaluate_expression(match.group(1), context)
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    return EXPRESSION.sub(one, str(text))


def condition(text: str | None, context: Mapping[str, Any]) -> bool:
    """A step's or job's `if:` (with or without `${{ }}`); default success()."""
    if text is None:
        return bool(context.get("_ok", True))
    text = str(text).strip()
    match = EXPRESSION.fullmatch(text)
    value = evaluate_expression(match.group(1) if match else text, context)
    status_checked = re.search(r"\b(always|success|failure)\(\)", text)
    return bool(value) and (bool(status_checked) or bool(context.get("_ok", True)))


# --- files the steps write -------------------------------------------------------------------


def read_file_command(path: Path) -> dict[str, str]:
    """NAME=value lines and NAME<<DELIMITER blocks (the $GITHUB_OUTPUT / $GITHUB_ENV format)."""
    values: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        elif line.strip():
            raise ActionError(f"{path.name}: not NAME=value: {line!r}")
        i += 1
    return values


@dataclass
class _Runner:
    """What the steps of one action or job share: environment, files, contexts."""

    env: dict[str, str]
    workspace: Path
    context: dict[str, Any]
    summary: list[str] = field(default_factory=list)

    def run_script(self, name: str, script: str, step_env: Mapping[str, str], cwd: Path,
                   extra: Mapping[str, str] = ()) -> Step:  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="gp-step-") as tmp:
            files = {key: Path(tmp) / key.lower() for key in
                     ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")}
            for path in files.values():
                path.touch()
            script_path = Path(tmp) / "step.sh"
            script_path.write_text(script)
            env = {**self.env, **dict(extra), **step_env, **{k: str(p) for k, p in files.items()}}
            code = subprocess.run([*BASH, str(script_path)], cwd=cwd, env=env).returncode
            outputs = read_file_command(files["GITHUB_OUTPUT"])
            self.env.update(read_file_command(files["GITHUB_ENV"]))
            for entry in reversed(files["GITHUB_PATH"].read_text().splitlines()):
                if entry.strip():
                    self.env["PATH"] = f"{entry.strip()}{os.pathsep}{self.env.get('PATH', '')}"
            self.summary.append(files["GITHUB_STEP_SUMMARY"].read_text())
        return Step(name, "success" if code == 0 else "failure", code, outputs)


def _step_env(step: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): evaluate(v, context) for k, v in (step.get("env") or {}).items()}


def _record(context: dict[str, Any], step: Mapping[str, Any], result: Step) -> None:
    if step.get("id"):
        context["steps"][step["id"]] = {"outputs": result.outputs, "outcome": result.outcome,
                                        "conclusion": result.outcome}  # fmt: skip
    if result.outcome == "failure":
        context["_ok"] = False


# --- a composite action ----------------------------------------------------------------------


def load_action(action_dir: Path) -> dict[str, Any]:
    path = next((action_dir / n for n in ("action.yml", "action.yaml")
                 if (action_dir / n).exists()), None)  # fmt: skip
    if path is None:
        raise ActionError(f"no action.yml in {action_dir}")
    action = yaml.safe_load(path.read_text())
    if (action.get("runs") or {}).get("using") != "composite":
        raise ActionError("not a composite action")
    return action


def run_action(
    action_dir: Path,
    inputs: Mapping[str, str],
    env: Mapping[str, str],
    workspace: Path,
    github: Mapping[str, Any] | None = None,
) -> Run:
    """Run a composite action's steps in order, as GitHub's runner does."""
    action = load_action(action_dir)
    declared = action.get("inputs") or {}
    unknown = set(inputs) - set(declared)
    if unknown:
        raise ActionError(f"unexpected inputs {sorted(unknown)}")
    base = {"github": dict(github or {}), "runner": {"temp": env.get("RUNNER_TEMP", "")},
            "env": dict(env), "steps": {}, "_ok": True}  # fmt: skip
    values = {}
    for name, spec in declared.items():
        spec = spec or {}
        if name in inputs:
            values[name] = str(inputs[name])
        elif "default" in spec:
            values[name] = evaluate(spec["default"], base)
        elif spec.get("required"):
            raise ActionError(f"input {name!r} is required")
        else:
            values[name] = ""
    context = {**base, "inputs": values}
    runner = _Runner(dict(env), workspace, context)
    results = []
    for index, step in enumerate(action["runs"]["steps"]):
        name = step.get("name") or step.get("id") or f"step {index + 1}"
        if "uses" in step:
            raise ActionError(f"{name}: actions inside this action are not run here")
        if step.get("shell") is None:
            raise ActionError(f"{name}: a composite action's run step needs a shell")
        if step["shell"] != "bash":
            raise ActionError(f"{name}: only shell bash is run here")
        if not condition(step.get("if"), context):
            results.append(Step(name, "skipped"))
            continue
        cwd = workspace / evaluate(step.get("working-directory", "."), context)
        result = runner.run_script(name, evaluate(step["run"], context), _step_env(step, context),
                                   cwd, {"GITHUB_ACTION_PATH": str(action_dir)})  # fmt: skip
        results.append(result)
        _record(context, step, result)
    outputs = {name: evaluate((spec or {}).get("value", ""), context)
               for name, spec in (action.get("outputs") or {}).items()}  # fmt: skip
    return Run(results, outputs, "".join(runner.summary))


# --- a workflow job --------------------------------------------------------------------------

Handler = Callable[[dict[str, str], dict[str, Any]], dict[str, str]]


def load_workflow(path: Path) -> dict[str, Any]:
    workflow = yaml.safe_load(path.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on` as true
    return workflow


def run_job(
    workflow_path: Path,
    context: Mapping[str, Any],
    env: Mapping[str, str],
    workspace: Path,
    handlers: Mapping[str, Handler],
) -> Run | None:
    """Run the workflow's one job; None when its `if:` says it does not run. `handlers` run the
    `uses:` steps that are not local actions, by action name (before the @)."""
    workflow = load_workflow(workflow_path)
    (job,) = workflow["jobs"].values()
    ctx: dict[str, Any] = {**context, "steps": {}, "_ok": True,
                           "runner": {"temp": env.get("RUNNER_TEMP", "")}, "env": dict(env)}
    if not condition(job.get("if"), ctx):
        return None
    runner = _Runner({**env, **_step_env(job, ctx)}, workspace, ctx)
    results = []
    for index, step in enumerate(job["steps"]):
        name = step.get("name") or step.get("uses") or f"step {index + 1}"
        if not condition(step.get("if"), ctx):
            results.append(Step(name, "skipped"))
            continue
        step_env = _step_env(step, ctx)
        if "uses" in step:
            inputs = {str(k): evaluate(v, ctx) for k, v in (step.get("with") or {}).items()}
            target = str(step["uses"])
            if target.startswith("./"):
                run = run_action(workspace / target, inputs, {**runner.env, **step_env},
                                 workspace, ctx.get("github"))  # fmt: skip
                runner.summary.append(run.summary)
                failed = next((s for s in run.steps if s.outcome == "failure"), None)
                result = Step(name, "failure" if failed else "success",
                              failed.code if failed else 0, run.outputs)  # fmt: skip
            else:
                handler = handlers.get(target.split("@", 1)[0])
                if handler is None:
                    raise ActionError(f"{name}: no handler for {target}")
                result = Step(name, "success", 0, handler(inputs, ctx))
        else:
            cwd = workspace / evaluate(step.get("working-directory", "."), ctx)
            result = runner.run_script(name, evaluate(step["run"], ctx), step_env, cwd)
        results.append(result)
        _record(ctx, step, result)
    return Run(results, {}, "".join(runner.summary))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Run a composite action's steps here.")
    parser.add_argument("action", type=Path, help="action.yml")
    parser.add_argument("-i", "--input", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--workspace", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    inputs = dict(item.split("=", 1) for item in args.input)
    try:
        run = run_action(args.action.resolve().parent, inputs, dict(os.environ),
                         args.workspace.resolve(), {"token": os.environ.get("GITHUB_TOKEN", "")})
    except ActionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for step in run.steps:
        print(f"{step.outcome:8} {step.name}")
    for name, value in run.outputs.items():
        print(f"output {name}={value}")
    return 0 if run.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
