# Part of expflow's generated runtime (see VERSION): `expflow update` replaces this folder.
"""Profiles: one project, several clusters.

settings.env holds what the project shares (metrics, the shape of a job);
profiles/<ClusterName>.env holds what one cluster needs (account, partitions,
GPU types, scratch, how jobs get their Python, MaxArraySize, accounting), in
the same KEY='value' grammar, read by the same reader (files.read_settings).
On a cluster the profile named after its ClusterName applies over
settings.env; `local` where there is no SLURM; PROFILE=<name> chooses another
for one call. A project without profiles/ is its one settings.env, as before.

Which cluster this is: SLURM_CLUSTER_NAME inside a job, else `scontrol show
config`'s ClusterName, cached per host (and SLURM_CONF) under .expflow/ for at
most CLUSTER_CACHE_SECONDS.

Standard library only, Python 3.6+.
"""

import os
import time

from . import files, slurmkit

PROFILES_DIR = "profiles"
SUFFIX = ".env"
LOCAL = "local"  # the profile of a machine without SLURM
# What differs from one cluster to the next: the keys a profile holds, and the
# ones `expflow profile add` moves out of settings.env. The rest is shared.
PROFILE_KEYS = ("CLUSTER", "SLURM_ACCOUNTING", "MAX_ARRAY_SIZE", "ACCOUNT", "PARTITION", "QOS",
                "CONSTRAINT", "GPU_TYPE", "GPUS", "TIME", "SCRATCH_ROOT", "ENV_MODULES", "ENV_CONDA",
                "ENV_CONDA_BASE", "ENV_VENV", "ENV_CONTAINER", "ENV_CONTAINER_OVERLAY")
# ... of which settings.env keeps a copy when split: the cluster the project was
# made for (what `expflow update` records for jobs from before profiles).
KEPT_KEYS = ("CLUSTER",)
# Keys project_settings adds: the profile in use and why (printed at submission).
CHOSEN_KEYS = ("PROFILE", "PROFILE_CHOICE")
CACHE_DIR = ".expflow"
# A host does not change clusters; the bound only limits how long a wrong
# answer (a reconfigured ClusterName, a copied .expflow/) can last.
CLUSTER_CACHE_SECONDS = 24 * 3600


# ----------------------------------------------------------------- the files

def check_name(name, what="PROFILE"):
    return files.check_profile_name(name, what)


def profiles_dir(root):
    return os.path.join(root, PROFILES_DIR)


def uses_profiles(root):
    return os.path.isdir(profiles_dir(root))


def profile_names(root):
    """The profiles present, sorted: profiles/<name>.env."""
    try:
        names = os.listdir(profiles_dir(root))
    except OSError:
        return []
    return sorted(name[:-len(SUFFIX)] for name in names
                  if name.endswith(SUFFIX) and files.ID_PATTERN.match(name[:-len(SUFFIX)]))


def read_profile(root, name):
    return files.read_settings(profiles_dir(root), name=check_name(name) + SUFFIX)


def profile_text(name, values, note):
    """A profile file: a header saying what it is, then KEY='value' lines."""
    lines = ["# Profile {}: the settings of cluster {} for this project (README.md, Several clusters).".format(
        name, name),
             "# On that cluster they apply over settings.env. Data only: KEY='value' lines.",
             "# " + note]
    ordered = [key for key in PROFILE_KEYS if key in values] + sorted(set(values) - set(PROFILE_KEYS))
    lines += ["{}={}".format(key, files.quote_setting(files.check_value(key, values[key]))) for key in ordered]
    return "\n".join(lines) + "\n"


def write_profile(root, name, values, note):
    """Write profiles/<name>.env; never over an existing one (False then)."""
    os.makedirs(profiles_dir(root), exist_ok=True)
    path = os.path.join(profiles_dir(root), check_name(name) + SUFFIX)
    return files.write_bytes_atomic(path, profile_text(name, values, note).encode("utf-8"), exclusive=True)


# ----------------------------------------------------------------- which cluster this is

def cluster_name(text):
    """`scontrol show config` -> its ClusterName ("" when it names none)."""
    return slurmkit.parse_scontrol_config(text).get("ClusterName", "")


def ask_cluster(env):
    """(ClusterName, problem) from scontrol; ("", "") where there is no SLURM."""
    timeout = float(env.get("EXPFLOW_SLURM_TIMEOUT") or 15)
    result = slurmkit.run_command(slurmkit.SCONTROL_CONFIG_ARGV, timeout=timeout)
    if result.returncode is None and result.error.endswith(" not found"):
        return "", ""
    if not result.ok:
        return "", slurmkit.describe_failure(result)
    name = cluster_name(result.stdout)
    return (name, "") if name else ("", "scontrol show config names no ClusterName")


def cache_path(root, env):
    """One cache file per host and SLURM_CONF: a shared home or project is seen
    from several clusters, and SLURM_CONF can point one host at another."""
    import hashlib  # here: 2 ms of the start of every command, most of which never look for it
    key = "{}\0{}".format(files.hostname(), env.get("SLURM_CONF", ""))
    return os.path.join(root, CACHE_DIR, "cluster-{}.json".format(hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]))


def cluster_here(root, env, now=None):
    """(the ClusterName jobs submitted from here go to, "" without SLURM; a
    problem, "" when none)."""
    if env.get("SLURM_CLUSTER_NAME"):  # inside a job: SLURM says
        return env["SLURM_CLUSTER_NAME"], ""
    now = time.time() if now is None else now
    path = cache_path(root, env)
    cached, _problem = files.read_json(path)
    if isinstance(cached, dict) and isinstance(cached.get("cluster"), str) and \
            0 <= now - float(cached.get("epoch") or 0) < CLUSTER_CACHE_SECONDS:
        return cached["cluster"], ""
    name, problem = ask_cluster(env)
    if name:  # "no SLURM here" is not kept: a module load may bring scontrol
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            files.write_json_atomic(path, {"cluster": name, "host": files.hostname(),
                                           "slurm_conf": env.get("SLURM_CONF", ""), "epoch": now,
                                           "checked": files.now_iso()})
        except (OSError, files.ProjectError):
            pass  # a project on a read-only file system asks every time
    return name, problem


# ----------------------------------------------------------------- the settings in use

def choose_profile(root, env):
    """(profile name, why): PROFILE=, else the cluster this is, else local."""
    if env.get("PROFILE"):
        return check_name(env["PROFILE"]), "PROFILE={}".format(env["PROFILE"])
    cluster, problem = cluster_here(root, env)
    if problem:
        raise files.ProjectError("cannot tell which cluster this is ({}); name the profile for this call with "
                                 "PROFILE=<name> ({})".format(problem, ", ".join(profile_names(root)) or "none yet"))
    if not cluster:
        return LOCAL, "no SLURM here"
    return check_name(cluster, "ClusterName"), "cluster {}".format(cluster)


def project_settings(env, root=files.ROOT):
    """The settings a command works with: settings.env, and over it the profile
    chosen (choose_profile), named in PROFILE (and why, PROFILE_CHOICE). Without
    profiles/ it is settings.env alone, as in projects before profiles."""
    settings = files.read_settings(root)
    if not uses_profiles(root):
        if env.get("PROFILE"):
            raise files.ProjectError("PROFILE={} given, but this project has no profiles/: `expflow profile add` "
                                     "writes one per cluster (README.md, Several clusters)".format(env["PROFILE"]))
        return settings
    name, why = choose_profile(root, env)
    present = profile_names(root)
    if name not in present:
        raise files.ProjectError(missing_profile(name, why, present))
    merged = dict(settings, **read_profile(root, name))
    merged.update(PROFILE=name, PROFILE_CHOICE=why)
    return merged


def job_place(settings, env, backend, root=files.ROOT):
    """What each submission records and says about where it runs: the cluster
    this is ("" without SLURM, or when it cannot be told) and the profile used
    ("" without profiles). A local job of a one-file project is known by its
    host: SLURM is not asked then."""
    if backend != "slurm" and not settings.get("PROFILE"):
        return {"cluster": "", "profile": ""}
    cluster, _problem = cluster_here(root, env)
    return {"cluster": cluster, "profile": settings.get("PROFILE", "")}


def describe_place(place, settings, why):
    """"profile greene (cluster greene); WHY" for the submission's [OK] line
    (why: how the backend was chosen)."""
    if place["profile"]:
        return "profile {} ({}); {}".format(place["profile"], settings.get("PROFILE_CHOICE", ""), why)
    return "cluster {}; {}".format(place["cluster"], why) if place["cluster"] else why


def elsewhere(job, here):
    """Whether a job was submitted on another cluster than here: its scheduler
    cannot be asked from here (a job without a recorded cluster is here's)."""
    return bool(job.get("cluster")) and job["cluster"] != here


class LazyClusterHere:
    """A function giving the cluster here (cluster_here), asked once, and only
    when a job that records its cluster needs it: a project of one cluster never
    asks (on_other_cluster)."""

    def __init__(self, env, root=files.ROOT):
        self.env, self.root, self.name = env, root, None

    def __call__(self):
        if self.name is None:
            self.name = cluster_here(self.root, self.env)[0]
        return self.name


def on_other_cluster(cluster, here):
    """elsewhere for a job that records cluster ("": none), with here a
    LazyClusterHere: asked only when the job records a cluster."""
    return bool(cluster) and cluster != here()


def only_here(jobs, env, root=files.ROOT):
    """The jobs (metadata entries) this cluster's scheduler can cancel; each of
    another cluster is said, not cancelled: its id here may be someone's job."""
    here = cluster_of_jobs(jobs, env, root)
    for job in jobs:
        if elsewhere(job, here):
            files.warn("job {} runs on {}, not here: cancel it there".format(job.get("job_id", "?"), job["cluster"]))
    return [job for job in jobs if not elsewhere(job, here)]


def cluster_of_jobs(jobs, env, root=files.ROOT):
    """The cluster here, asked only when some job records one (else "")."""
    return cluster_here(root, env)[0] if any(job.get("cluster") for job in jobs) else ""


def missing_profile(name, why, present):
    have = ", ".join(present) or "none"
    if why.startswith("PROFILE="):
        return "{}: there is no profiles/{}.env (profiles: {})".format(why, name, have)
    return ("no profile for {} ({}): run `expflow profile add` here, inside the project, to write "
            "profiles/{}.env, or choose one for this call with PROFILE=<name> (profiles: {})".format(
                name if name != LOCAL else "this machine", why, name, have))


def job_settings(argv, env):
    """run.py job-settings [DIR]: the settings the job runs with (the profile
    chosen at submission: PROFILE travels in the job's environment, and inside
    a job SLURM names its cluster) as the records job-lib.sh reads."""
    settings = project_settings(env, argv[0] if argv else files.ROOT)
    return files.write_setting_records({k: v for k, v in settings.items() if k not in CHOSEN_KEYS})


# ----------------------------------------------------------------- one settings.env -> profiles

def split_settings(root, name):
    """Turn a project of one settings.env into profiles: settings.env's lines of
    PROFILE_KEYS move to profiles/<name>.env (KEPT_KEYS are copied), every value
    kept (settings.env with the profile over it reads as settings.env did). The
    profile is written first: cut short, both files hold those values and
    nothing is lost. Returns the moved {KEY: value}."""
    if uses_profiles(root):
        raise files.ProjectError("{} exists already: this project has profiles".format(
            files.display_path(profiles_dir(root))))
    before = files.read_settings(root)  # refuses a file off the grammar: nothing is written then
    path = os.path.join(root, files.SETTINGS_FILE)
    with open(path, "rb") as handle:
        lines = handle.read().decode("utf-8").split("\n")
    kept, moved = [], {}
    for line in lines:
        setting = files.parse_setting(line)
        if setting and setting[0] in PROFILE_KEYS:
            moved[setting[0]] = setting[1]  # a key given twice: the last wins, as in read_settings
        if not setting or setting[0] not in PROFILE_KEYS or setting[0] in KEPT_KEYS:
            kept.append(line)
    names = [key for key in PROFILE_KEYS if key in moved and key not in KEPT_KEYS]
    kept.insert(leading_comments(kept), "# The cluster's own settings ({}) live in profiles/<cluster>.env: "
                "README.md, Several clusters.".format(", ".join(names) or "none"))
    write_profile(root, name, moved, "Moved here from settings.env by `expflow profile add`.")
    files.write_text_atomic(path, "\n".join(kept))
    if dict(files.read_settings(root), **read_profile(root, name)) != before:
        raise files.ProjectError("settings.env and profiles/{}.env do not add up to the settings before: "
                                 "check them".format(name))  # cannot happen; said rather than hidden
    return moved


def leading_comments(lines):
    """Where the first block of comment lines ends."""
    for index, line in enumerate(lines):
        if not line.startswith("#"):
            return index
    return len(lines)
