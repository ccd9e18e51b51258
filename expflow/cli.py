"""The expflow command: a thin layer that parses arguments and calls the library.

Only main() prints errors or exits; the library raises ExpflowError instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from expflow import __version__, gitrepo, runtime
from expflow.advisor import Access, account_access, check_access, cluster_report, find_project, render
from expflow.cluster import ClusterFacts
from expflow.context import (
    build_context,
    check_location,
    parse_assignments,
    partition_values,
    targets_slurm,
    template_defaults,
)
from expflow.detect import detect, start_detect
from expflow.errors import ExpflowError, UsageError
from expflow.profiles import add_profile, list_profiles


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="expflow", description="Experiment projects for SLURM clusters.")
    parser.add_argument("--version", action="version", version=f"expflow {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="show what was detected and where each value came from")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument("--refresh", action="store_true",
                      help="check which account may use which partition again, even when this project has it cached")

    res = commands.add_parser("resources", help="GPUs per partition, the queue, your jobs; where a job can start now")
    res.add_argument("--partition", default="", help="only this partition")
    res.add_argument("--gpu-type", default="", help="only this GPU type, which the job then needs")
    res.add_argument("--gpus", default="1", help="GPUs the job needs per node (default 1; 0: no GPU)")
    res.add_argument("--time", default="", help="the job's time limit (default: the partition's)")
    res.add_argument("--json", action="store_true", help="machine-readable output")

    new = commands.add_parser("scaffold", help="generate a new experiment project")
    new.add_argument("name", help="project name, also its directory name")
    new.add_argument("-o", "--output-dir", default=".", help="where to create the project (default: .)")
    new.add_argument("--no-input", action="store_true", help="take the detected defaults without asking")
    new.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a setting (repeatable), e.g. --set partition=h200_tandon")
    new.add_argument("--no-detect", action="store_true",
                     help="skip detection: offline defaults (BACKEND=auto: SLURM where sbatch is on PATH, "
                          "else this machine)")
    new.add_argument("--check-access", action="store_true",
                     help="ask SLURM (sbatch --test-only) whether it accepts the account, partition, GPUs and time, "
                          "and which partitions each of your accounts may use (the project's access cache)")

    upd = commands.add_parser("update", help="bring a generated project to this expflow's template, keeping your edits")
    upd.add_argument("dir", nargs="?", default=".", help="the project (default: .)")
    upd.add_argument("--dry-run", action="store_true", help="say what would change, per file; write nothing")
    upd.add_argument("--force", action="store_true", help="update a git project with uncommitted changes")

    prof = commands.add_parser("profile", help="one project, several clusters: a profile of settings per cluster")
    actions = prof.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="detect this cluster and write its profile, profiles/<ClusterName>.env")
    add.add_argument("dir", nargs="?", default=".", help="the project (default: .)")
    listing = actions.add_parser("list", help="the project's profiles, and which one this cluster gets")
    listing.add_argument("dir", nargs="?", default=".", help="the project (default: .)")
    comp = commands.add_parser("completion",
                               help="print a shell completion script: eval \"$(expflow completion bash)\"")
    comp.add_argument("shell", choices=["bash"], help="the shell (bash)")
    return parser


def print_info(facts: ClusterFacts, access: Access | None, access_source: str, as_json: bool) -> None:
    if as_json:
        access_fields = dict(access, source=access_source) if access else None
        print(json.dumps({**facts.as_dict(), "access": access_fields}, indent=2))
        return
    source = facts.sources.get
    rows = [
        ("user", facts.user, source("user")),
        ("home", facts.home, source("home")),
        ("scratch", facts.scratch or "(none)", source("scratch")),
        ("cluster", facts.cluster, source("cluster")),
        ("accounting", "on" if facts.accounting else "off", source("accounting", "")),
        ("accounts", ", ".join(facts.accounts) or "(none)", source("accounts", "")),
        ("default account", facts.default_account or "(none)", source("accounts", "")),
        ("conda", facts.conda_base or "(none)", source("conda_base")),
    ]
    for label, value, where in rows:
        print(f"{label + ':':17} {value}" + (f"   [{where}]" if where else ""))
    if facts.partitions:
        print(f"partitions:       [{source('partitions')}]")
        print(f"  {'NAME':16} {'GPU TYPES':16} {'GPUS/NODE':>9} {'NODES':>5}  MAX TIME")
        for p in facts.partitions:
            name = p.name + ("*" if p.default else "")
            print(f"  {name:16} {','.join(p.gpu_types) or '-':16} {p.gpus_per_node:>9} {p.nodes:>5}  {p.max_time}")
    if access:
        print_access(access, access_source)
    for warning in facts.warnings:
        print(f"WARNING: {warning}")


def print_access(access: Access, source: str) -> None:
    """Per account, the partitions that accept it, and SLURM's reason for the others."""
    print(f"access:           [{source}, checked {access['checked']}; --refresh checks again]")
    for entry in access["accounts"]:
        name = entry["account"] or "(your default)"
        print(f"  {name:30} {', '.join(entry['accepted']) or '(no partition)'}")
        for partition, reason in entry["refused"].items():
            print(f"  {'':30} refused by {partition}: {reason}")
        for partition, reason in entry.get("unchecked", {}).items():
            print(f"  {'':30} not known for {partition}: {reason}")


def run_info(args: argparse.Namespace) -> int:
    facts = detect()
    access, source = account_access(facts, find_project(Path.cwd()), args.refresh)
    print_info(facts, access, source, args.json)
    return 0


def run_resources(args: argparse.Namespace) -> int:
    request = {"partition": args.partition, "gpu_type": args.gpu_type, "gpus": args.gpus, "time": args.time}
    report = cluster_report(request, find_project(Path.cwd()))
    for warning in report["warnings"]:
        print(f"WARNING: {warning}", file=sys.stderr)
    print(render(report, args.json, shutil.get_terminal_size((120, 24)).columns), end="")
    return 0


Ask = Callable[[str], str]
MAX_TRIES = 5  # invalid answers to one question before scaffold gives up


def ask_choice(ask: Ask, question: str, default: str, choices: Sequence[str] = (), resource: str = "") -> str:
    """Ask until the answer is empty (the default), one of choices when there are
    some, and a valid value of the resource setting when one is named (gpus, time)."""
    hint = f" ({', '.join(choices)})" if choices else ""
    for _ in range(MAX_TRIES):
        answer = ask(f"{question}{hint} [{default}]: ").strip() or default
        problem = answer_problem(answer, default, choices, resource)
        if not problem:
            return answer
        print(f"  {problem}; try again (Ctrl-C stops, nothing written)", file=sys.stderr)
    # answers piped in (`yes x | expflow scaffold`) would ask for ever
    raise UsageError(f"{question}: no valid answer in {MAX_TRIES} tries")


def answer_problem(answer: str, default: str, choices: Sequence[str], resource: str) -> str:
    if choices and answer not in choices and answer != default:
        return f"{answer!r} is not one of {', '.join(choices)}"
    if resource:
        try:
            runtime.module("slurmkit").check_option(resource, answer)
        except ValueError as exc:
            return str(exc)
    return ""


def prompt_overrides(facts: ClusterFacts | None, context: dict[str, str], ask: Ask) -> dict[str, str]:
    """Ask for the few values people change, with the detected ones as defaults."""
    answers: dict[str, str] = {}
    partitions = [p.name for p in facts.partitions] if facts else []
    answers["partition"] = ask_choice(ask, "Partition", context.get("partition", ""), partitions)
    if facts and answers["partition"] != context.get("partition"):
        context = {**context, **partition_values(facts, answers["partition"])}
    found = facts.partition(answers["partition"]) if facts else None
    if found is None or found.gpus_per_node:
        types = found.gpu_types if found else ()
        answers["gpu_type"] = ask_choice(ask, "GPU type", context.get("gpu_type", ""), types)
        answers["gpus"] = ask_choice(ask, "GPUs per job", context.get("gpus", "0"), resource="gpus")
    accounts = facts.accounts if facts else ()
    answers["account"] = ask_choice(ask, "Account", context.get("account", ""), accounts)
    answers["time"] = ask_choice(ask, "Time limit per job", context.get("time") or template_defaults()["time"],
                                 resource="time")
    answers.update(prompt_environment(ask))
    return {key: value for key, value in answers.items() if value != context.get(key, "")}


# How jobs get their Python: the question for each kind, and the settings it fills.
ENVIRONMENT_QUESTIONS = {
    "modules": [("env_modules", "Modules to load, space-separated (e.g. python/3.11 cuda/12.1)")],
    "conda": [("env_conda", "Conda environment name or path")],
    "venv": [("env_venv", "Virtualenv directory")],
    "apptainer": [("env_container", "Apptainer/Singularity image (.sif)"),
                  ("env_container_overlay", "Overlay image (empty: none)")],
}


def prompt_environment(ask: Ask) -> dict[str, str]:
    kinds = ["none", *ENVIRONMENT_QUESTIONS]
    kind = ask_choice(ask, "How do jobs get their Python", "none", kinds)
    return {key: ask_choice(ask, question, "") for key, question in ENVIRONMENT_QUESTIONS.get(kind, [])}


def run_scaffold(args: argparse.Namespace, ask: Ask) -> int:
    overrides = parse_assignments(args.set)
    if args.check_access and args.no_detect:
        raise UsageError("--check-access asks SLURM, so it does not go with --no-detect")
    # SLURM first: its queries run while Python loads cookiecutter, which takes less time
    detecting = None if args.no_detect else start_detect()
    from expflow.template import scaffold  # cookiecutter: paid for by scaffold only, not by --version

    facts = detecting() if detecting else None
    for warning in facts.warnings if facts else ():
        print(f"WARNING: {warning}", file=sys.stderr)
    context = build_context(args.name, facts, overrides)
    check_location(Path(args.output_dir) / args.name, targets_slurm(context, facts))
    if not args.no_input:
        answers = prompt_overrides(facts, context, ask)
        context = build_context(args.name, facts, {**overrides, **answers})
    if args.check_access:
        if facts is None or not facts.slurm:
            raise UsageError("--check-access needs SLURM, and sbatch is not on PATH")
        print(f"[OK] {check_access(context)}")
    project = scaffold(context, args.output_dir)
    if facts is not None and args.check_access:
        # asked to check: the project's access cache too. Otherwise it is written
        # when first needed (expflow info, make resources REFRESH=1): a scaffold
        # stays at a few SLURM calls, not one sbatch per account and partition.
        account_access(facts, project, refresh=True)
    where = context.get("partition") or "default partition"
    print(f"[OK] created {project} (cluster {context.get('cluster', 'local')}, {where})")
    report_git(Path(project), ask, args.no_input)
    print(f"Next: cd {project} && make train EXP=001")
    return 0


def report_git(project: Path, ask: Ask, no_input: bool) -> None:
    """Offer git init where the project is in no repository; say what its place means otherwise."""
    # with no_input, location_note asks git alone: one git call, not two
    if not no_input and gitrepo.enclosing_repository(project) is None and wants_git(ask):
        print(gitrepo.init_repository(project))
        return
    note = gitrepo.location_note(project)
    if note:
        print(note, file=sys.stderr)


def completion_script(parser: argparse.ArgumentParser) -> str:
    """expflow/completion.bash with the commands and their options of parser:
    completion follows the CLI, with nothing to keep in step by hand."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    cases = [f"      {name}) words=\"{' '.join(o for a in sub._actions for o in a.option_strings)}\" ;;"
             for name, sub in commands.items()]
    script = (Path(__file__).parent / "completion.bash").read_text()
    return script.replace("@EXPFLOW_COMMANDS@", " ".join([*commands, "--help", "--version"])).replace(
        "@EXPFLOW_OPTIONS@", "\n".join(cases))


def wants_git(ask: Ask) -> bool:
    """The project is written by now: no valid answer is a no, not an error."""
    try:
        return ask_choice(ask, "Make the project a git repository (each run then records its commit)", "y",
                          ("y", "n")) == "y"
    except UsageError as exc:
        print(f"WARNING: {exc}: no git repository made", file=sys.stderr)
        return False


def run_update(args: argparse.Namespace) -> int:
    from expflow.update import update_project  # here: `expflow --version` does not import it

    report = update_project(Path(args.dir), dry_run=args.dry_run, force=args.force)
    print("\n".join(report.lines))
    return 0


def run_profile(args: argparse.Namespace) -> int:
    if args.action == "list":
        found = list_profiles(Path(args.dir))
        if not found:
            print("no profiles: this project is its one settings.env (expflow profile add writes the first)")
        for profile in found:
            where = ", ".join(f"{key}={profile.values[key]}" for key in ("ACCOUNT", "PARTITION", "GPU_TYPE")
                              if profile.values.get(key))
            print(f"{'*' if profile.here else ' '} {profile.name:16} {where or '(SLURM defaults)'}")
        return 0
    facts = detect()
    for warning in facts.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    added = add_profile(Path(args.dir), facts)
    if added.split_into:
        print(f"[OK] moved settings.env's cluster settings ({', '.join(added.moved) or 'none'}) "
              f"to profiles/{added.split_into}.env")
    if added.written:
        print(f"[OK] wrote profiles/{added.name}.env ({added.why}); check it, then: make train EXP=...")
    else:
        print(f"profiles/{added.name}.env exists already ({added.why}): left as it is")
    return 0


def main(argv: Sequence[str] | None = None, ask: Ask = input) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = run_command(args, ask)
        sys.stdout.flush()  # here rather than at exit, where a reader gone would be a traceback
        return code
    except ExpflowError as exc:
        print(f"expflow: error: {exc}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("expflow: cancelled; nothing written", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `expflow info | head`: the reader has gone, no traceback
        stdout_to_devnull()
        return 1


def run_command(args: argparse.Namespace, ask: Ask) -> int:
    if args.command == "info":
        return run_info(args)
    if args.command == "resources":
        return run_resources(args)
    if args.command == "update":
        return run_update(args)
    if args.command == "profile":
        return run_profile(args)
    if args.command == "completion":
        print(completion_script(build_parser()), end="")
        return 0
    return run_scaffold(args, ask)


def stdout_to_devnull() -> None:
    """Standard output into /dev/null, so that Python's flush at exit writes no
    second BrokenPipeError (the `signal` documentation's recipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
