# Builds the media path's per-packet modules with mypyc (`make setup` runs it; docs/media.md "Compiled
# per-packet Python"). Never fails the set-up: without a C compiler, Python's headers or mypyc it prints one
# line and the worker runs the same modules as pure Python. The output goes to services/media/_native/
# (git-ignored) with a manifest of each source's SHA-256; services/media/native.py loads a compiled module
# only while every compiled source still has the hash it was built from.
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from services.media.native import COMPILED, NATIVE_DIR, PACKAGE_ROOT, Manifest, source_hashes


def _missing_toolchain() -> str | None:
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    if shutil.which(compiler.split()[0]) is None:
        return f"no C compiler ({compiler.split()[0]})"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        return f"no Python headers ({include}/Python.h: install python3-dev)"
    try:
        import mypyc  # noqa: F401
        import setuptools  # noqa: F401
    except ImportError as exc:
        return f"no {exc.name} (the dev set: `make setup`)"
    return None


def fresh() -> bool:
    """Whether the built modules match the sources and this interpreter (nothing to do)."""
    manifest = Manifest.read()
    return manifest is not None and manifest.matches(source_hashes())


def build() -> None:
    """Compiles COMPILED into NATIVE_DIR, then writes the manifest. Raises (or exits) on a failed build."""
    from mypyc.build import mypycify
    from setuptools import Distribution

    hashes = source_hashes()
    with tempfile.TemporaryDirectory(prefix="sb-mypyc-") as scratch:
        # mypy reads a copy of the package's sources: run inside an installed tree (the image's
        # site-packages) it would take every module there for ours (a `typing_extensions.py` "shadows" the
        # library). mypyc names the modules from the paths, relative to the current directory.
        src = Path(scratch) / "src"
        for source in (PACKAGE_ROOT / "services").rglob("*.py"):
            target = src / source.relative_to(PACKAGE_ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        staging = Path(scratch) / "lib"
        cwd = os.getcwd()
        os.chdir(src)
        try:
            extensions = mypycify(
                ["--ignore-missing-imports", *(name.replace(".", "/") + ".py" for name in COMPILED)],
                target_dir=str(Path(scratch) / "c"),
                group_name="services_media_native",
                opt_level="3",
                debug_level="0",
            )
            dist = Distribution({"name": "services-media-native", "ext_modules": extensions})
            dist.script_args = [
                "-q",
                "build_ext",
                "--build-lib",
                str(staging),
                "--build-temp",
                str(Path(scratch) / "tmp"),
                "--parallel",
                str(os.cpu_count() or 1),
            ]
            dist.parse_command_line()
            dist.run_commands()
        finally:
            os.chdir(cwd)
        if NATIVE_DIR.exists():
            shutil.rmtree(NATIVE_DIR)
        shutil.copytree(staging, NATIVE_DIR)
    Manifest.of(hashes).write()


def main(argv: list[str]) -> int:
    if argv == ["--compile"]:  # the child below: mypyc and the compiler print freely here
        build()
        return 0
    if os.environ.get("SB_MEDIA_PURE", "") not in ("", "0"):
        print("media: SB_MEDIA_PURE is set: the per-packet modules stay pure Python (not compiled)")
        return 0
    if fresh():
        return 0
    missing = _missing_toolchain()
    if missing:
        print(
            f"media: {missing}: the per-packet modules run as pure Python (slower per packet; docs/media.md)"
        )
        return 0
    print(f"media: compiling {len(COMPILED)} per-packet modules with mypyc into {NATIVE_DIR}")
    started = time.monotonic()
    # A child process, so mypyc's and gcc's chatter is shown only when the build fails.
    child = subprocess.run(
        [sys.executable, "-m", "services.media.native_build", "--compile"],
        cwd=PACKAGE_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if child.returncode != 0 or not fresh():
        shutil.rmtree(NATIVE_DIR, ignore_errors=True)
        tail = (child.stdout + child.stderr).strip().splitlines()[-15:]
        print("\n".join(tail))
        print("media: the mypyc build failed (above): the per-packet modules run as pure Python")
        return 0
    print(f"media: compiled in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
