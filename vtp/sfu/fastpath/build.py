"""cffi build of the C send path (``vtp.sfu.fastpath._fanout``), run by setup.py at install.

The cdef below is what Python touches of fanout.h; structs end in ``...;`` so the
compiler, not this file, decides their layout."""

from __future__ import annotations

from cffi import FFI

CDEF = """
typedef int (*vtp_protect_fn)(void *ctx, void *rtp, int *len);

struct vtp_sink {
    vtp_protect_fn protect;
    void *srtp;
    int fd;
    int last_errno;
    uint64_t send_errors;
    uint64_t protect_errors;
    uint64_t oversize;
    ...;
};

struct vtp_down {
    struct vtp_sink *sink;
    int64_t start_useq;
    int64_t highest_useq;
    uint64_t packets;
    uint64_t octets;
    uint32_t ssrc;
    uint32_t ts_offset;
    uint16_t seq_offset;
    uint8_t payload_type;
    uint8_t mid_id;
    uint8_t level_id;
    uint8_t abs_id;
    uint8_t mid_len;
    uint8_t mid[16];
    ...;
};

int vtp_send(struct vtp_down *d, int marker, int64_t useq, uint32_t uts, int audio_level,
             uint32_t abs_send_time, const uint8_t *payload, int payload_len);
int vtp_write(struct vtp_down *d, int marker, int64_t useq, uint32_t uts, int audio_level,
              uint32_t abs_send_time, const uint8_t *payload, int payload_len);
int vtp_fanout(struct vtp_down *const *downs, int count, int marker, int64_t useq,
               uint32_t uts, int audio_level, uint32_t abs_send_time, const uint8_t *payload,
               int payload_len);
int vtp_sink_target(struct vtp_sink *s, int fd, const char *host, int port);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
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
