"""Builds libshmexec.so from the Go sources (as `make lib` does: the version
script that exports only shmx_* names, and the SONAME libshmexec.so.0) and
puts it, with include/shmexec.h, inside the shmexec package (and, as
`make lib` does, with the changes to its Go runtime that
internal/rtpatch makes); the wheel is
tagged for the platform (py3-none-linux_x86_64), never as pure Python.

Needs Go (>= the go.mod's version) on PATH, at $GO, or at /usr/local/go."""

import os
import re
import shutil
import subprocess

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))


def _version():
    with open(os.path.join(ROOT, "include", "shmexec.h")) as f:
        h = f.read()
    part = {k: re.search(r"#define SHMX_VERSION_%s (\d+)" % k, h).group(1) for k in ("MAJOR", "MINOR", "PATCH")}
    return "{MAJOR}.{MINOR}.{PATCH}".format(**part)


def _go():
    for cand in (os.environ.get("GO"), shutil.which("go"), "/usr/local/go/bin/go"):
        if cand and os.path.exists(cand):
            return cand
    raise SystemExit("shmexec: building the package needs Go 1.26 or later (on PATH, at $GO, or at /usr/local/go)")


def _rtpatch(go):
    """The flags that build the library with the changes to its Go
    runtime (internal/rtpatch, as `make lib` does), or none where the
    toolchain's runtime does not fit them: rtpatch then says so on stderr,
    and the library is built with the stock runtime (correct, slower)."""
    out = subprocess.run([go, "run", "./internal/rtpatch", "-out", os.path.join(ROOT, "build", "_rtpatch")], cwd=ROOT,
                         env=dict(os.environ, GO=go), stdout=subprocess.PIPE, text=True)
    return out.stdout.split() if out.returncode == 0 else []


class build_py_with_library(build_py):
    """build_py, then the shared library and the header into the package."""

    def run(self):
        super().run()
        pkg = os.path.join(self.build_lib, "shmexec")
        os.makedirs(os.path.join(pkg, "include"), exist_ok=True)
        # Named by its SONAME, so that a C program linked against it finds it.
        lib = os.path.abspath(os.path.join(pkg, "libshmexec.so.0"))
        ldflags = "-extldflags '-Wl,--version-script=%s -Wl,-soname,libshmexec.so.0'" % os.path.join(ROOT, "capi", "shmexec.map")
        go = _go()
        rtpatch = _rtpatch(go)
        self.announce("go build %s -buildmode=c-shared -o %s ./capi" % (" ".join(rtpatch), lib), level=2)
        subprocess.run([go, "build", "-trimpath"] + rtpatch + ["-buildmode=c-shared", "-ldflags", ldflags, "-o", lib, "./capi"], cwd=ROOT, check=True)
        generated = os.path.join(pkg, "libshmexec.so.h")
        if os.path.exists(generated):  # cgo's header is not the contract
            os.remove(generated)
        shutil.copy(os.path.join(ROOT, "include", "shmexec.h"), os.path.join(pkg, "include", "shmexec.h"))


class platform_distribution(Distribution):
    """The package holds a native library: it is built and installed as
    platform-specific (platlib), like a package with an extension."""

    def has_ext_modules(self):
        return True


class platform_wheel(bdist_wheel):
    """A wheel for this platform and any Python 3: the library is no
    extension module of one Python's ABI (it is loaded with ctypes)."""

    def get_tag(self):
        return ("py3", "none") + super().get_tag()[2:]


setup(
    version=_version(),
    distclass=platform_distribution,
    cmdclass={"build_py": build_py_with_library, "bdist_wheel": platform_wheel},
)
