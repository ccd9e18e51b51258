"""The harvest index (.expflow/harvest.index) is a cache, never the source of
truth: through it, make results and make status give exactly what a harvest
without it gives, whatever happened to the experiments or to the index, and
experiments whose files did not change are not read again.

The sequences run inside a generated project, through its own runtime (one
process per sequence), with the runtime's own writers making the experiments."""

import json
import os
import subprocess
import sys
import time
import zlib

import pytest
from conftest import make, run

from expflow.runtime import module

# Part of the scripts below: preloads lists, for each index.Preload made,
# whether it started a child.
PRELOADS = r'''
preloads = []
real_preload = index.Preload.__init__
def counting_preload(preload, *args):
    real_preload(preload, *args)
    preloads.append(preload.pid is not None)
index.Preload.__init__ = counting_preload
'''

# Runs in the project: python3 DRIVER SEED STEPS. Makes experiments with the
# runtime's writers, changes them at random, and after every step compares the
# harvest through the index with a harvest without one (the index moved aside
# meanwhile, then put back, so that it goes on aging). Prints one JSON object.
DRIVER = r'''
import contextlib, glob, io, json, os, random, shutil, sys, time, types
sys.path.insert(0, os.getcwd())
from expflow_runtime import files, index, results, rowcache, state, submit
from expflow_runtime import harvest as harvest_lib

seed, steps = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
ROOT = files.ROOT
INDEX = os.path.join(ROOT, index.INDEX_FILE)
ROWS = os.path.join(ROOT, rowcache.ROWS_FILE)
STATUS_ROWS = os.path.join(ROOT, rowcache.STATUS_FILE)
SHIFT = float(sys.argv[3]) if len(sys.argv) > 3 else 3600.0
if len(sys.argv) > 4:  # the dead bytes a data file may hold before it is compacted
    index.COMPACT_BYTES = int(sys.argv[4])
if len(sys.argv) > 5:  # index.Preload at every harvest, not from 2,000 experiments on two cores
    index.PRELOAD_ENTRIES, index.usable_cpus = 0, lambda: 2
    if sys.argv[5] == "broken":  # a child that ends without an answer
        index.preload_child = lambda *args: os._exit(3)
''' + PRELOADS + r'''data_names = set()
real_time = time.time
# An hour ahead: every entry is old enough to be kept (SETTLE_SECONDS is
# tested on its own with the real clock); each change below changes a size or
# an inode, as the runtime's writers and a job's appends do.
index.time = types.SimpleNamespace(time=lambda: real_time() + SHIFT)
loads = []
real_load = state.load_experiment
MAIN, CHILD_LOADS = os.getpid(), os.path.join(ROOT, "child-loads")
def counting_load(root, exp_id, *args, **kwargs):
    loads.append(exp_id)
    if os.getpid() != MAIN:  # index.Preload's child: counted through a file
        with open(CHILD_LOADS, "a") as handle:
            handle.write(exp_id + "\n")
    return real_load(root, exp_id, *args, **kwargs)

def child_loads():
    """What Preload's children read since last asked."""
    if not os.path.exists(CHILD_LOADS):
        return []
    with open(CHILD_LOADS) as handle:
        found = handle.read().split()
    os.unlink(CHILD_LOADS)
    return found
state.load_experiment = counting_load
real_view = index.View.experiment
def view_experiment(view, entry):
    """Not counted: an experiment whose blob in the data file was damaged read from its files."""
    before = len(loads)
    found = real_view(view, entry)
    del loads[before:]
    return found
index.View.experiment = view_experiment
renders = []
real_row = harvest_lib.result_row
def counting_row(exp, jobs):
    renders.append(exp["id"])
    return real_row(exp, jobs)
harvest_lib.result_row = counting_row
settings = files.read_settings(ROOT)

def harvest(command, env=None):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        getattr(results, command)(dict({"COLUMNS": "400", "ALL": "1"}, **(env or {})))
    found = {"stdout": out.getvalue(), "stderr": err.getvalue()}
    if command == "cmd_results":
        for kind in ("csv", "json", "md"):
            with open(os.path.join(ROOT, "results", "results." + kind), "rb") as handle:
                found[kind] = handle.read().decode("utf-8")
    return found

def compare(what):
    """The experiments make results read through the index (make status then
    reads none), and the rows it rendered anew rather than from its cache."""
    read, rendered = {}, {}
    for command in ("cmd_results", "cmd_status"):
        del loads[:], renders[:]
        child_loads()
        through = harvest(command)
        read[command], rendered[command] = list(loads) + child_loads(), list(renders)
        # a full harvest: no cache at all; then the caches put back with the
        # results files they describe (results.rows copies rows from them)
        kept = [INDEX, ROWS, STATUS_ROWS] + rowcache.result_paths(ROOT) + data_files()
        aside = os.path.join(ROOT, "aside")
        os.makedirs(aside, exist_ok=True)
        for number, path in enumerate(kept):
            if os.path.exists(path):
                os.replace(path, os.path.join(aside, str(number)))
        full = harvest(command)
        child_loads()
        for number, path in enumerate(kept):
            if os.path.exists(os.path.join(aside, str(number))):
                os.replace(os.path.join(aside, str(number)), path)
        if through != full:
            print(json.dumps({"differs": what, "command": command, "through": through, "full": full}))
            sys.exit(1)
    if read["cmd_status"] and SHIFT:  # on the real clock, what was just made is read every time
        print(json.dumps({"differs": what, "status read again": read["cmd_status"]}))
        sys.exit(1)
    return read["cmd_results"], rendered["cmd_results"]

def data_files():
    return glob.glob(os.path.join(ROOT, ".expflow", index.DATA_PREFIX + "*"))

def new_experiment(exp_id):
    config = {"optimizer": {"lr": rng.choice([0.1, 0.01, 1.306123])}, "state": "mystate", "seed": rng.randint(0, 9)}
    path = submit.write_experiment(exp_id, config, json.dumps(config), settings, {}, {"description": exp_id})
    token = "t" + exp_id
    job_id = "local-" + token
    intent = {"token": token, "stage": "train", "backend": "local", "resources": {}, "attempt": 1,
              "job_name": exp_id + "-train." + token, "log_template": files.log_name("train", "{job_id}"),
              "job_id": job_id}
    submit.submit_recorded([(path, intent)], lambda: {"pid": ""})
    record = {"stage": "train", "job_id": job_id, "state": "COMPLETED", "exit_code": 0, "restart": 0,
              "started": "2026-01-01T00:00:00+00:00", "ended": "2026-01-01T00:01:00+00:00", "node": "n1"}
    files.write_experiment_json(path, files.run_record_path(path, "train", job_id), record)
    write_results(path)

def write_results(path):
    files.write_json_atomic(os.path.join(path, "train_results.json"),
                            {"val_acc": rng.random(), "loss": rng.choice([0.1 + 0.2, 1e-300, 3.0])})

def append_metrics(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(path, "train_results.json"))
    with open(os.path.join(path, "train_metrics.jsonl"), "a") as handle:
        handle.write(json.dumps({"epoch": rng.randint(0, 99), "val_acc": rng.random()}) + "\n")

def rewrite_in_place(path):
    """What training code does: its results written in place (same inode)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(path, "train_metrics.jsonl"))
    with open(os.path.join(path, "train_results.json"), "w") as handle:
        json.dump({"val_acc": rng.random(), "extra": "x" * rng.randint(1, 30)}, handle)

def rewrite_config(path):
    """config.json written again as the runtime writes it (make train after an edit of config.yaml)."""
    files.write_json_atomic(os.path.join(path, "config.json"),
                            {"optimizer": {"lr": rng.random()}, "extra": "x" * rng.randint(1, 30)})

def record_state(path):
    for name in os.listdir(os.path.join(path, "runs")):
        record = json.load(open(os.path.join(path, "runs", name)))
        record["state"] = rng.choice(["RUNNING", "FAILED", "COMPLETED", "CANCELLED"])
        files.write_experiment_json(path, os.path.join(path, "runs", name), record)  # as jobrecord.py writes it

def damage_metadata(path):
    files.write_bytes_atomic(os.path.join(path, "metadata.json"), b"{not json" + b"x" * rng.randint(0, 9))

def damage_cache(path):
    """The index or the row cache damaged in one of six ways -> which."""
    if not os.path.exists(path):
        return "missing"
    data = bytearray(open(path, "rb").read())
    how = rng.choice(["flip", "truncate", "garbage", "delete", "header", "swap"])
    if how == "flip" and data:
        spot = rng.randrange(len(data))
        data[spot] = (data[spot] + rng.randint(1, 255)) % 256
    elif how == "truncate":
        data = data[:rng.randrange(len(data) + 1)]
    elif how == "garbage":
        data = bytearray(os.urandom(rng.randint(1, 4096)))
    elif how == "header":
        data = b"expflow-harvest-index 0\n" + data.split(b"\n", 1)[-1]  # another release's
    elif how == "swap":
        lines = data.split(b"\n")
        rng.shuffle(lines)
        data = b"\n".join(lines)
    if how == "delete":
        os.unlink(path)
    else:
        with open(path, "wb") as handle:
            handle.write(bytes(data))
    return how

made = 0
for _ in range(4):
    made += 1
    new_experiment("e{:03d}".format(made))
first, _ = compare("start")
unchanged, rendered = compare("nothing changed")
report = {"first_reads": len(first), "unchanged_reads": len(unchanged), "unchanged_renders": len(rendered),
          "steps": []}
KINDS = ["add", "add", "results", "metrics", "in_place", "config", "record", "metadata", "delete", "archive",
         "index", "index", "data", "rows", "output", "nothing"]
plan = rng.sample(KINDS, len(KINDS)) if steps >= len(KINDS) else []  # each kind at least once
plan += [rng.choice(KINDS) for _ in range(steps - len(plan))]
for action in plan:
    ids = files.list_experiment_ids(ROOT)
    target = os.path.join(ROOT, "experiments", rng.choice(ids)) if ids else None
    if action == "add" or target is None:
        made += 1
        action = "add"
        new_experiment("e{:03d}".format(made))
    elif action == "results":
        write_results(target)
    elif action == "metrics":
        append_metrics(target)
    elif action == "in_place":
        rewrite_in_place(target)
    elif action == "config":
        rewrite_config(target)
    elif action == "record":
        record_state(target)
    elif action == "metadata":
        damage_metadata(target)
    elif action == "delete":
        shutil.rmtree(target)
    elif action == "archive":
        os.makedirs(os.path.join(ROOT, "archive"), exist_ok=True)
        os.rename(target, os.path.join(ROOT, "archive", os.path.basename(target)))
    elif action == "index":
        action = "index " + damage_cache(INDEX)
    elif action == "data":  # the index's data file (its name is on the index's second line)
        data = data_files()
        action = "data " + (damage_cache(data[0]) if data else "missing")
    elif action == "rows":
        action = "rows " + damage_cache(rng.choice([ROWS, STATUS_ROWS]))
    elif action == "output":  # a results file edited by hand: results.rows copies no row from it
        with open(rng.choice(rowcache.result_paths(ROOT)), "r+b") as handle:
            handle.seek(rng.randrange(os.fstat(handle.fileno()).st_size))
            handle.write(b"#")
    reads, _ = compare(action)
    report["steps"].append([action, len(files.list_experiment_ids(ROOT)), len(reads)])
    data_names.update(os.path.basename(name) for name in data_files())
report["data_files"] = len(data_names)
report["preloads"] = sum(preloads)
print(json.dumps(report))
'''


def drive(project, seed, steps, *extra):
    result = subprocess.run([sys.executable, "-c", DRIVER, str(seed), str(steps), *extra], cwd=project,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_index_gives_the_full_harvest_after_random_changes(bake, seed):
    check_reads(drive(bake(), seed, 30))


@pytest.mark.parametrize("child", ["working", "broken"])
def test_stamps_a_second_process_took_give_the_full_harvest(bake, child):
    """index.Preload at every harvest (a forked child checks the later half
    of the experiments and reads again those that changed): the same rows as
    a harvest without an index, only the experiments that changed read again;
    a child that ends without an answer leaves the harvest to do it all."""
    report = drive(bake(), 5, 30, "3600", str(1 << 20), child)
    assert report["preloads"] > 10, report
    check_reads(report)


def check_reads(report):
    """What a driven sequence read again: what changed, and only it."""
    assert report["first_reads"] == 4 and report["unchanged_reads"] == 0  # cached: nothing read again
    assert report["unchanged_renders"] == 0  # nor rendered again
    for action, count, reads in report["steps"]:
        if action in ("nothing", "delete", "archive", "output") or action.startswith("rows "):
            assert reads == 0, report  # what is gone is dropped; the rest is not read again
        elif action in ("add", "results", "metrics", "in_place", "config", "record", "metadata"):
            assert reads == 1, report  # the experiment changed, and only it
        elif action in ("index delete", "index garbage", "index header"):
            assert reads == count, report  # a full harvest
    actions = {step[0] for step in report["steps"]}
    assert {"add", "delete"} <= actions and actions & {"results", "metrics", "in_place"}, actions
    assert any(a.startswith("index ") for a in actions) and any(a.startswith("rows ") for a in actions), actions
    assert any(a.startswith("data ") for a in actions), actions


# Runs in the project: experiments, some of whose submissions lost sbatch's
# answer, harvested twice, the second time with index.Preload forced. Prints
# the unresolved ids each harvest found and how many children were started.
UNRESOLVED = r'''
import json, os, sys, time, types
sys.path.insert(0, os.getcwd())
from expflow_runtime import files, index, ledger, submit
settings = files.read_settings(files.ROOT)
real_time = time.time
index.time = types.SimpleNamespace(time=lambda: real_time() + 3600)  # every entry settled
index.PRELOAD_ENTRIES, index.usable_cpus = 0, lambda: 2
''' + PRELOADS + r'''for number in range(1, 13):
    exp_id = "e{:02d}".format(number)
    path = submit.write_experiment(exp_id, {"seed": number}, "seed: 1", settings, {}, {})
    intent = {"token": "t" + exp_id, "stage": "train", "backend": "slurm", "resources": {}, "attempt": 1,
              "job_name": exp_id + "-train.t" + exp_id, "log_template": files.log_name("train", "{job_id}")}
    if number in (2, 9, 11):
        ledger.write_intent(path, intent)  # sbatch's answer lost
    else:
        submit.submit_recorded([(path, intent)], lambda: {"job_id": str(100 + number)})
found = []
for _ in range(2):
    with index.snapshot(files.ROOT, settings, True) as (summary, _view):
        found.append(sorted(summary.unresolved))
print(json.dumps({"unresolved": found, "children": preloads}))
'''


def test_a_second_process_keeps_the_ids_of_lost_submissions(bake):
    """index.Preload's runs of unchanged lines carry the ids whose sbatch
    answer was lost (the harvest settles them first): the same as checking
    every entry here."""
    project = bake()
    result = subprocess.run([sys.executable, "-c", UNRESOLVED], cwd=project, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["unresolved"] == [["e02", "e09", "e11"]] * 2, found
    assert found["children"] == [False, True], found  # no old index the first time: nothing to preload


def test_a_data_file_compacted_at_every_harvest_gives_the_same_rows(bake):
    """With no dead bytes allowed, each harvest after a change copies the live
    blobs to a new data file (and one whose blob is damaged reads it again)."""
    report = drive(bake(), 4, 30, "3600", "0")
    assert report["data_files"] > 5, report


def age(project, seconds=3600):
    """Every file of the experiments as if written an hour ago (older than SETTLE_SECONDS)."""
    past = time.time() - seconds
    for directory, dirs, names in os.walk(project / "experiments"):
        for name in dirs + names:
            os.utime(os.path.join(directory, name), (past, past), follow_symlinks=False)


def test_a_file_changed_within_one_tick_of_the_clock_is_still_seen(bake):
    """With the real clock, an experiment changed less than SETTLE_SECONDS ago
    is read again every time: a file rewritten in place within the same tick
    of the file system's clock (same size, same inode, same mtime) is seen."""
    project = bake()
    drive(project, 7, 0, "0")  # four experiments, just made
    results = project / "experiments" / "e001" / "train_results.json"
    results.write_text('{"val_acc": 0.25}')
    before = results.stat()
    make(project, "results")
    with open(results, "r+") as handle:  # the same inode, the same size
        handle.write('{"val_acc": 0.75}')
    os.utime(results, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same mtime
    make(project, "results")
    natives = {row["id"]: row for row in json.loads((project / "results/results.json").read_text())}
    assert natives["e001"]["val_acc"] == 0.75
    age(project)
    make(project, "results")
    lines = (project / ".expflow" / "harvest.index").read_text().splitlines()[2:]  # after its key and data file
    assert len(lines) == 4 and all(line.split("\t")[3] != "-" for line in lines)  # settled: kept


JOB_WRITES_MEANWHILE = r'''
import contextlib, io, json, os, sys, time, types
sys.path.insert(0, os.getcwd())
from expflow_runtime import files, index, results, state
real_time = time.time
index.time = types.SimpleNamespace(time=lambda: real_time() + 3600)
real_load = state.load_experiment
def load_then_job_writes(root, exp_id, *args, **kwargs):
    found = real_load(root, exp_id, *args, **kwargs)
    if exp_id == "e002":  # the job writes its results right after the harvest read them
        files.write_json_atomic(os.path.join(root, "experiments", exp_id, "train_results.json"), {"val_acc": 0.5})
    return found
state.load_experiment = load_then_job_writes
for _ in range(2):
    with contextlib.redirect_stdout(io.StringIO()):
        results.cmd_results({})
    rows = json.load(open(os.path.join(files.ROOT, "results", "results.json")))
    print(json.dumps([row["val_acc"] for row in rows if row["id"] == "e002"]))
    state.load_experiment = real_load
'''


def test_a_job_writing_while_the_harvest_runs_is_read_next_time(bake):
    project = bake()
    drive(project, 5, 0)
    (project / ".expflow" / "harvest.index").unlink()
    result = subprocess.run([sys.executable, "-c", JOB_WRITES_MEANWHILE], cwd=project, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    first, second = [json.loads(line) for line in result.stdout.split()]
    assert first != [0.5] and second == [0.5]


def resealed(cache, body, crc=None):
    """A cache file (the index, results.rows) of body, its head sealed again
    with crc as the crc of all its lines (by default the right one), as if
    another program had written it."""
    key, head, _ = cache.split(b"\n", 2)
    fields = head.split(b"\t")[1:]
    fields[-1] = crc or b"%08x" % zlib.crc32(body)
    rest = b"\t".join(fields)
    return key + b"\n" + b"%08x\t" % zlib.crc32(rest) + rest + b"\n" + body


def test_corrupt_index_gives_the_same_result(bake):
    project = bake()
    drive(project, 11, 3)
    age(project)
    make(project, "results", "ALL=1")
    expected = [(project / "results" / f"results.{kind}").read_bytes() for kind in ("csv", "md", "json")]
    status = make(project, "status", "ALL=1").stdout
    index = project / ".expflow" / "harvest.index"
    good = index.read_bytes()
    assert b"\t-\t" not in good  # every entry kept: the harvests below use them
    body = good.split(b"\n", 2)[2]
    damaged = [good[: len(good) // 2], good.replace(b"val_acc", b"val_acd"), b"\0" * 4096,
               good.replace(b"\t", b" ", 3), good[:-1],
               # a head that vouches for a body not written by a harvest, or that names no crc
               resealed(good, body.replace(b"val_acc", "val_\u00e0cc".encode())), resealed(good, body, b"zzzzzzzz")]
    for data in damaged:
        index.write_bytes(data)
        assert make(project, "status", "ALL=1").stdout == status
        index.write_bytes(data)
        make(project, "results", "ALL=1")
        assert [(project / "results" / f"results.{kind}").read_bytes() for kind in ("csv", "md", "json")] == expected
    rows = project / ".expflow" / "results.rows"
    for crc in (None, b"zzzzzzzz"):  # results.rows likewise: its rows are copied, or rendered anew
        rows.write_bytes(resealed(rows.read_bytes(), rows.read_bytes().split(b"\n", 2)[2], crc))
        make(project, "results", "ALL=1")
        assert [(project / "results" / f"results.{kind}").read_bytes() for kind in ("csv", "md", "json")] == expected
    index.unlink()
    index.mkdir()  # not even a file: the harvest goes on from a private copy
    make(project, "results", "ALL=1")
    assert (project / "results" / "results.csv").read_bytes() == expected[0]


def test_data_files_no_index_names_are_removed_once_old_enough(bake):
    """A data file left by a harvest killed before it saved its index, or by a
    full harvest after the index was deleted, goes at the next harvest, a warm
    one too, once STRAY_SECONDS old; a younger one may be a concurrent
    harvest's and stays, and so does the index's own."""
    project = bake()
    drive(project, 5, 2)
    age(project)
    make(project, "results")
    expflow = project / ".expflow"
    before = set(expflow.glob("harvest.data-*"))  # the index's own, and the driver's strays (minutes young)
    live = expflow / (expflow / "harvest.index").read_text().splitlines()[1].split("\t")[2]
    old, young = expflow / "harvest.data-0123456789ab", expflow / "harvest.data-ba9876543210"
    for stray, minutes in ((old, 11), (young, 1)):
        stray.write_bytes(live.read_bytes())
        past = time.time() - minutes * 60
        os.utime(stray, (past, past))
    make(project, "results")
    assert live in before and set(expflow.glob("harvest.data-*")) == before | {young}
    index = module("index")  # a folder that cannot be listed: nothing removed, and no error
    index.left_behind(str(expflow / "harvest.index"), live.name, "")
    assert set(expflow.glob("harvest.data-*")) == before | {young}


FROM_FILES_ALONE = r'''
import json, os, sys
sys.path.insert(0, os.getcwd())
from expflow_runtime import rowcache

def experiment(*jobs, problems=()):
    """jobs: (stage, backend, record state or None, extra job fields)."""
    listed = [dict({"stage": stage, "backend": backend, "job_id": "{}-{}".format(stage, n)}, **extra)
              for n, (stage, backend, _state, extra) in enumerate(jobs)]
    records = {(job["stage"], job["job_id"]): {"state": state} for job, (_, _, state, _) in zip(listed, jobs) if state}
    return {"metadata": {"jobs": listed}, "records": records, "problems": list(problems)}

cases = {
    "new": experiment(),
    "local completed": experiment(("train", "local", "COMPLETED", {})),
    "slurm failed, then evaluated": experiment(("train", "slurm", "FAILED", {}), ("eval", "slurm", "COMPLETED", {})),
    "local running": experiment(("train", "local", "RUNNING", {})),
    "slurm cancelled (maybe requeued)": experiment(("train", "slurm", "CANCELLED", {})),
    "slurm without a record": experiment(("train", "slurm", None, {})),
    "sbatch answer lost": experiment(("train", "slurm", None, {"unresolved": True})),
    "another cluster's": experiment(("train", "slurm", "COMPLETED", {"cluster": "greene"})),
    "a file unreadable": experiment(("train", "local", "COMPLETED", {}), problems=["config.json: not JSON"]),
    "evaluation running": experiment(("train", "local", "COMPLETED", {}), ("eval", "local", "RUNNING", {})),
}
print(json.dumps({name: rowcache.from_files_alone(exp) for name, exp in cases.items()}))
'''


def test_only_rows_that_follow_from_the_files_alone_are_cached(bake):
    """A row whose state the scheduler, a clock or a process may still change is
    rendered at every harvest: only ended jobs with their own final record."""
    result = run([sys.executable, "-c", FROM_FILES_ALONE], cwd=bake())
    cached = {name for name, yes in json.loads(result.stdout).items() if yes}
    assert cached == {"new", "local completed", "slurm failed, then evaluated"}


def test_a_log_written_in_place_is_read_again_when_patterns_read_logs(bake):
    """With METRIC_PATTERN_1 set, a settled experiment's log is stamped like
    its other files: a line appended in place, or a log added to logs/, is
    read at the next harvest through the index."""
    project = bake()
    settings = project / "settings.env"
    settings.write_text(settings.read_text().replace(
        "METRIC_PATTERN_1=''", "METRIC_PATTERN_1='printed=(?P<printed>[0-9.]+)'"))
    drive(project, 5, 0)
    log = project / "experiments" / "e001" / "logs" / "train-local-te001.out"
    log.parent.mkdir(exist_ok=True)
    log.write_text("printed=0.25\n")
    age(project)

    def printed():
        make(project, "results")
        rows = json.loads((project / "results" / "results.json").read_text())
        return {row["id"]: row.get("printed") for row in rows}["e001"]

    assert printed() == 0.25
    with open(log, "a") as handle:  # the job prints on: same inode, new size
        handle.write("printed=0.5\n")
    age(project)
    assert printed() == 0.5
    lines = (project / ".expflow" / "harvest.index").read_text().splitlines()[1:]
    assert "logs/train-local-te001.out" in [line.split("\t")[2] for line in lines if "\te001\t" in line][0]


# Runs in the project: python3 WRITERS EXPERIMENT. Whether each of the runtime's
# writers into runs/ and jobs/ changes the experiment directory's stamp, which
# is all make status checks (the files there are not stamped one by one).
WRITERS = r'''
import json, os, sys
sys.path.insert(0, os.getcwd())
from expflow_runtime import jobrecord, ledger
exp = sys.argv[1]

def touched(write):
    os.utime(exp, ns=(0, 0))
    write()
    return os.lstat(exp).st_mtime_ns != 0

job_env = {"EXPFLOW_EXP_DIR": exp, "EXPFLOW_STAGE": "train", "EXPFLOW_JOB_ID": "42"}
intent = {}
print(json.dumps({
    "run record": touched(lambda: jobrecord.write_record(job_env, {"stage": "train", "job_id": "42"})),
    "record rewritten": touched(lambda: jobrecord.write_record(job_env, {"stage": "train", "state": "FAILED"})),
    "intent": touched(lambda: intent.update(ledger.write_intent(exp, {"token": "t0", "stage": "train"}))),
    "outcome": touched(lambda: ledger.write_outcome(exp, intent, "job", {"job_id": "42"})),
}))
'''


def test_every_runtime_writer_in_runs_and_jobs_changes_the_experiments_stamp(bake):
    project = bake()
    experiment = project / "experiments" / "e001"
    (experiment / "runs").mkdir(parents=True)
    result = run([sys.executable, "-c", WRITERS, str(experiment)], cwd=project)
    assert json.loads(result.stdout) == dict.fromkeys(["run record", "record rewritten", "intent", "outcome"], True)
