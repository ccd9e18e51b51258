"""Build expflow/legacy/template-<version>.json, the data `expflow update` keeps
of an old release's template, and the test copy of that template.

    python3 tests/legacy_data.py            # 0.1.0, from git commit c8809da

It writes, from the commit's cookiecutter-template/ (git show, read-only):
  expflow/legacy/template-0.1.0.json
      {"version", "commit", "cookiecutter.json", "files": {relpath: source} of every
      template file but the machinery, "machinery": {relpath: sha256}}
  tests/data/legacy/expflow-0.1.0-template.tar.gz
      git archive c8809da cookiecutter-template | gzip -9 -n
tests/test_update.py checks that the JSON is what the tarball gives (CI may
have no git history), then renders the tarball to make 0.1.0 projects.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RELEASES = {"0.1.0": "c8809da"}
TEMPLATE = "cookiecutter-template"
PROJECT = "{{cookiecutter.project_slug}}"


def is_machinery(relpath: str) -> bool:
    """0.1.0's machinery: the scripts' Python modules and the job library; the
    sbatch scripts beside them are the user's."""
    return relpath.startswith("scripts/") and (relpath.endswith(".py") or relpath == "scripts/job-lib.sh")


def git_archive(commit: str) -> bytes:
    archive = subprocess.run(["git", "archive", commit, TEMPLATE], cwd=REPO, capture_output=True, check=True).stdout
    return subprocess.run(["gzip", "-9", "-n"], input=archive, capture_output=True, check=True).stdout


def tarball_files(data: bytes) -> dict[str, bytes]:
    """{path under cookiecutter-template/: content} of a gzipped `git archive`."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith(TEMPLATE + "/"):
                handle = tar.extractfile(member)
                assert handle is not None
                files[member.name[len(TEMPLATE) + 1:]] = handle.read()
    return files


def legacy_json(version: str, commit: str, files: dict[str, bytes]) -> dict:
    """The package data of one release from its template's files."""
    prefix = PROJECT + "/"
    project = {path[len(prefix):]: content for path, content in sorted(files.items()) if path.startswith(prefix)}
    return {
        "version": version,
        "commit": commit,
        "generated_by": "tests/legacy_data.py",
        "cookiecutter.json": json.loads(files["cookiecutter.json"]),
        "files": {rel: content.decode() for rel, content in project.items() if not is_machinery(rel)},
        "machinery": {rel: hashlib.sha256(content).hexdigest() for rel, content in project.items()
                      if is_machinery(rel)},
    }


def dump(data: dict) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    for version, commit in RELEASES.items():
        tarball = git_archive(commit)
        (REPO / "tests" / "data" / "legacy" / f"expflow-{version}-template.tar.gz").write_bytes(tarball)
        data = legacy_json(version, commit, tarball_files(tarball))
        (REPO / "expflow" / "legacy" / f"template-{version}.json").write_text(dump(data))
        print(f"[OK] {version} from {commit}: {len(data['files'])} files, {len(data['machinery'])} machinery hashes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
