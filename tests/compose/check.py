"""Checks a compose file without a Docker engine: against the Compose specification's
JSON schema (the one docker-compose 1.29.2 ships, fetched once from PyPI and checked by
its hash), then against this project's rules for it. Exit 0 when it passes.

usage: check.py <compose file> <cache directory>
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import jsonschema
import yaml

WHEEL = "docker_compose-1.29.2-py2.py3-none-any.whl"
WHEEL_SHA256 = "8d5589373b35c8d3b1c8c1182c6e4a4ff14bffa3dd0b605fcd08f73c94cef809"
SCHEMA_IN_WHEEL = "compose/config/compose_spec.json"


def compose_schema(cache):
    path = os.path.join(cache, "compose_spec.json")
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        with tempfile.TemporaryDirectory() as download:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--dest", download, "docker-compose==1.29.2"],
                check=True,
            )
            wheel = os.path.join(download, WHEEL)
            with open(wheel, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            if digest != WHEEL_SHA256:
                sys.exit(f"{WHEEL} does not match its pinned sha256 ({digest})")
            # Tests run this concurrently: each writes its own temporary file and renames
            # it into place atomically, so a reader never sees half a schema.
            with zipfile.ZipFile(wheel) as archive, tempfile.NamedTemporaryFile(
                dir=cache, suffix=".part", delete=False
            ) as out:
                out.write(archive.read(SCHEMA_IN_WHEEL))
            os.replace(out.name, path)
    with open(path) as f:
        return json.load(f)


def our_rules(compose):
    services = compose["services"]
    problems = []
    for name in ("postgres", "redis"):
        if "ports" in services[name]:
            problems.append(f"{name} publishes ports on the host")
    for name, service in services.items():
        if "restart" not in service:
            problems.append(f"{name} has no restart policy")
    builders = [name for name, service in services.items() if "build" in service]
    if builders != ["app"]:
        problems.append(f"one image, built once by app; built by: {builders}")
    if services["worker"].get("image") != services["app"].get("image"):
        problems.append("the worker must run the app's image")
    if "healthcheck" not in services["app"]:
        problems.append("app has no healthcheck")
    for name in ("app", "worker"):
        secret = str(services[name]["environment"].get("JWT_SECRET", ""))
        if not secret.startswith("${JWT_SECRET:?"):
            problems.append(f"{name}: JWT_SECRET must be required (${{JWT_SECRET:?…}}), not {secret!r}")
    return problems


def main():
    compose_file, cache = sys.argv[1], sys.argv[2]
    with open(compose_file) as f:
        compose = yaml.safe_load(f)
    validator = jsonschema.Draft201909Validator(compose_schema(cache))
    problems = [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(compose)
    ]
    if not problems:
        problems = our_rules(compose)
    for problem in problems:
        print(problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
