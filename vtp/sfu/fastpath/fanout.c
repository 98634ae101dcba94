/* The SFU's per-packet send path: header rewrite, SRTP protect, sendto - in C.
 *
 * Python decides *what* goes where (validation, numbering offsets, membership, NACK,
 * RTCP); this file only writes bytes, per subscriber, for the packets Python hands it.
 * Measured reason (bench/forward.py): the same loop in Python spent ~4 us per forwarded
 * packet in interpreter work around the two real costs, srtp_protect and sendto.
 *
 * Memory: every struct here is allocated and kept alive by Python (cffi ffi.new).
 * A sink whose fd is -1 sends nothing; Python sets that before the SRTP session or the
 * socket can go away, so no pointer here is used after its owner released it.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "fanout.h"

_Static_assert(sizeof(((struct vtp_sink *)0)->addr) >= sizeof(struct sockaddr_in6),
               "vtp_sink.addr must hold an IPv6 address");

static int write_extensions(const struct vtp_down *d, uint8_t *ext, int audio_level,
                            uint32_t abs_send_time)
{
    /* RFC 8285 one-byte header: 0xBEDE, length in 32-bit words, then id/len elements */
    int e = 4;
    if (d->mid_id && d->mid_len) {
        ext[e++] = (uint8_t)((d->mid_id << 4) | (d->mid_len - 1));
        memcpy(ext + e, d->mid, d->mid_len);
        e += d->mid_len;
    }
    if (d->level_id && audio_level >= 0) {
        ext[e++] = (uint8_t)(d->level_id << 4);
        ext[e++] = (uint8_t)audio_level;
    }
    if (d->abs_id) {
        ext[e++] = (uint8_t)((d->abs_id << 4) | 2);
        ext[e++] = (uint8_t)(abs_send_time >> 16);
        ext[e++] = (uint8_t)(abs_send_time >> 8);
        ext[e++] = (uint8_t)abs_send_time;
    }
    if (e == 4)
        return 0;
    while (e & 3)
        ext[e++] = 0;
    ext[0] = 0xBE;
    ext[1] = 0xDE;
    ext[2] = (uint8_t)(((e - 4) >> 2) >> 8);
    ext[3] = (uint8_t)((e - 4) >> 2);
    return e;
}

/* Shift the picture ID and TL0PICIDX of the VP8 payload descriptor (RFC 7741) at p, in
 * the send buffer (the shared payload is never changed): a subscriber switched between
 * simulcast encodings sees them continue, and one whose upper temporal layers are
 * dropped sees picture IDs without the dropped pictures (pid_skip of them precede this
 * one). Bounds-checked against len. */
static void rewrite_vp8(const struct vtp_down *d, uint8_t *p, int len, uint16_t pid_skip)
{
    if (len < 3 || !(p[0] & 0x80))
        return;
    uint8_t x = p[1];
    int i = 2;
    if (x & 0x80) {
        if (p[i] & 0x80) {
            if (i + 1 >= len)
                return;
            uint16_t pid =
                (uint16_t)((((p[i] & 0x7F) << 8) | p[i + 1]) + d->pid_offset - pid_skip);
            p[i] = (uint8_t)(0x80 | ((pid >> 8) & 0x7F));
            p[i + 1] = (uint8_t)pid;
            i += 2;
        } else {
            p[i] = (uint8_t)((p[i] + d->pid_offset - pid_skip) & 0x7F);
            i += 1;
        }
    }
    if ((x & 0x40) && i < len)
        p[i] = (uint8_t)(p[i] + d->tl0_offset);
}

/* seq_skip: packets of the up track's numbering below fseq this down does not get (its
 * temporal level drops them); pid_skip: pictures likewise (see rewrite_vp8) */
static int send_packet(struct vtp_down *d, int marker, int64_t fseq, int64_t seq_skip,
                       uint32_t uts, int audio_level, uint32_t abs_send_time,
                       const uint8_t *payload, int payload_len, uint16_t pid_skip)
{
    struct vtp_sink *s = d->sink;
    if (s == NULL || s->fd < 0 || s->protect == NULL || payload_len < 0)
        return 0;
    uint8_t *b = s->buf;
    int n = 12 + write_extensions(d, b + 12, audio_level, abs_send_time);
    if (n + payload_len > VTP_MAX_PACKET) { /* buf has room for the tag on top */
        s->oversize++;
        return 0;
    }
    uint16_t seq16 = (uint16_t)(fseq - seq_skip + d->seq_offset);
    uint32_t ts = uts + d->ts_offset;
    b[0] = n > 12 ? 0x90 : 0x80;
    b[1] = (uint8_t)((marker ? 0x80 : 0) | (d->payload_type & 0x7F));
    b[2] = (uint8_t)(seq16 >> 8);
    b[3] = (uint8_t)seq16;
    b[4] = (uint8_t)(ts >> 24);
    b[5] = (uint8_t)(ts >> 16);
    b[6] = (uint8_t)(ts >> 8);
    b[7] = (uint8_t)ts;
    b[8] = (uint8_t)(d->ssrc >> 24);
    b[9] = (uint8_t)(d->ssrc >> 16);
    b[10] = (uint8_t)(d->ssrc >> 8);
    b[11] = (uint8_t)d->ssrc;
    memcpy(b + n, payload, (size_t)payload_len);
    if (d->vp8_rewrite || pid_skip)
        rewrite_vp8(d, b + n, payload_len, pid_skip);
    int len = n + payload_len;
    if (s->protect(s->srtp, b, &len) != 0) {
        s->protect_errors++;
        return 0;
    }
    ssize_t sent = sendto(s->fd, b, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)s->addr,
                          (socklen_t)s->addrlen);
    if (sent < 0) {
        s->send_errors++;
        s->last_errno = errno;
        return 0;
    }
    return len;
}

int vtp_send(struct vtp_down *d, int marker, int64_t fseq, uint32_t uts, int audio_level,
             uint32_t abs_send_time, const uint8_t *payload, int payload_len)
{
    return send_packet(d, marker, fseq, 0, uts, audio_level, abs_send_time, payload,
                       payload_len, 0);
}

int vtp_send_skip(struct vtp_down *d, int marker, int64_t fseq, int64_t seq_skip, uint32_t uts,
                  int audio_level, uint32_t abs_send_time, const uint8_t *payload,
                  int payload_len, uint16_t pid_skip)
{
    return send_packet(d, marker, fseq, seq_skip, uts, audio_level, abs_send_time, payload,
                       payload_len, pid_skip);
}

static int write_packet(struct vtp_down *d, int marker, int64_t fseq, int64_t seq_skip,
                        uint32_t uts, int audio_level, uint32_t abs_send_time,
                        const uint8_t *payload, int payload_len, uint16_t pid_skip)
{
    if (fseq < d->start_fseq)
        return 0; /* older than where this subscriber started */
    if (fseq > d->highest_fseq)
        d->highest_fseq = fseq;
    /* counted whether or not the kernel took it: the sequence number is spent */
    d->packets++;
    d->octets += (uint64_t)payload_len;
    return send_packet(d, marker, fseq, seq_skip, uts, audio_level, abs_send_time, payload,
                       payload_len, pid_skip);
}

int vtp_write(struct vtp_down *d, int marker, int64_t fseq, uint32_t uts, int audio_level,
              uint32_t abs_send_time, const uint8_t *payload, int payload_len)
{
    return write_packet(d, marker, fseq, 0, uts, audio_level, abs_send_time, payload,
                        payload_len, 0);
}

int vtp_fanout(struct vtp_down *const *downs, int count, int marker, int64_t fseq,
               uint32_t uts, int audio_level, uint32_t abs_send_time, const uint8_t *payload,
               int payload_len)
{
    int sent = 0;
    for (int i = 0; i < count; i++)
        if (write_packet(downs[i], marker, fseq, 0, uts, audio_level, abs_send_time, payload,
                         payload_len, 0))
            sent++;
    return sent;
}

int vtp_fanout_skip(struct vtp_down *const *downs, int count, int marker, int64_t fseq,
                    int64_t seq_skip, uint32_t uts, int audio_level, uint32_t abs_send_time,
                    const uint8_t *payload, int payload_len, uint16_t pid_skip)
{
    int sent = 0;
    for (int i = 0; i < count; i++)
        if (write_packet(downs[i], marker, fseq, seq_skip, uts, audio_level, abs_send_time,
                         payload, payload_len, pid_skip))
            sent++;
    return sent;
}

int vtp_sink_target(struct vtp_sink *s, int fd, const char *host, int port)
{
    memset(s->addr, 0, sizeof(s->addr));
    struct sockaddr_in *v4 = (struct sockaddr_in *)s->addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)s->addr;
    if (port <= 0 || port > 65535) {
        s->fd = -1;
        return -1;
    }
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        s->addrlen = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        s->addrlen = sizeof(*v6);
    } else {
        s->fd = -1;
        return -1;
    }
    s->fd = fd;
    return 0;
}
