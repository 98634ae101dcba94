"""cffi build of the C send path (``vtp.sfu.fastpath._fanout``), run by setup.py at install.

The cdef is fanout.h itself, less its preprocessor lines (cffi reads plain declarations;
``#define VTP_...`` integer constants are kept and reach Python as ``lib`` attributes)."""

from __future__ import annotations

import re
from pathlib import Path

from cffi import FFI

HEADER = Path(__file__).resolve().parent / "fanout.h"
_CONSTANT = re.compile(r"#define VTP_\w+ \d+")


def cdef_source() -> str:
    lines = []
    for line in HEADER.read_text().splitlines():
        if line.lstrip().startswith("#"):
            match = _CONSTANT.match(line.strip())
            if not match:
                continue
            line = match.group(0)
        lines.append(line)
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(cdef_source())
ffibuilder.set_source(
    "vtp.sfu.fastpath._fanout",
    '#include "fanout.h"',
    # setuptools wants paths relative to setup.py (the project root, the build's cwd)
    sources=["vtp/sfu/fastpath/fanout.c"],
    include_dirs=["vtp/sfu/fastpath"],
    extra_compile_args=["-O2", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
