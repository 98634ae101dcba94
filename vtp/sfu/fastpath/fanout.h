/* The fan-out's structures and functions. build.py hands this file to cffi as its cdef
 * (without the preprocessor lines other than VTP_ constants), so it uses only fixed-width
 * types: the address is stored as bytes and read as a struct sockaddr by fanout.c. */
#ifndef VTP_FANOUT_H
#define VTP_FANOUT_H
#include <stdint.h>

#define VTP_MAX_PACKET 1484 /* 1500-byte datagrams, less room for the SRTP auth tag */

/* libsrtp 2's srtp_protect(srtp_t, void *rtp, int *len): protects in place */
typedef int (*vtp_protect_fn)(void *ctx, void *rtp, int *len);

/* One subscriber connection's sending side: its SRTP session and nominated UDP path. */
struct vtp_sink {
    vtp_protect_fn protect;
    void *srtp;
    int fd; /* -1: send nothing */
    int last_errno;
    uint32_t addrlen;
    uint32_t addr[7]; /* a struct sockaddr_in or sockaddr_in6 (28 bytes, 4-aligned) */
    uint64_t send_errors;
    uint64_t protect_errors;
    uint64_t oversize;
    uint8_t buf[2048];
};

/* One outgoing stream: numbering offsets and negotiated ids of one subscriber. Packets
 * come in the up track's forwarded numbering (fseq, see vtp/sfu/seqmap.py) and leave with
 * the 16-bit wire number seq16 = fseq + seq_offset (less a temporal level's skip). */
struct vtp_down {
    struct vtp_sink *sink;
    int64_t start_fseq;   /* first up-track packet (fseq) this subscriber gets */
    int64_t highest_fseq; /* highest up-track packet (fseq) sent */
    uint64_t packets;
    uint64_t octets;
    uint32_t ssrc;
    uint32_t ts_offset;
    uint16_t seq_offset;
    uint8_t payload_type;
    uint8_t mid_id; /* header-extension ids; 0 = not negotiated */
    uint8_t level_id;
    uint8_t abs_id;
    uint8_t mid_len;
    uint8_t mid[16];
    /* VP8 payload descriptor rewrite (simulcast switches): added to the picture ID
     * (mod 2^15, or 2^7 for a 7-bit one) and TL0PICIDX (mod 2^8) when vp8_rewrite */
    uint16_t pid_offset;
    uint8_t tl0_offset;
    uint8_t vp8_rewrite;
};

/* one packet to one down, no bookkeeping (retransmissions); bytes sent or 0 */
int vtp_send(struct vtp_down *d, int marker, int64_t fseq, uint32_t uts, int audio_level,
             uint32_t abs_send_time, const uint8_t *payload, int payload_len);
/* one packet to one down, numbering and counters kept */
int vtp_write(struct vtp_down *d, int marker, int64_t fseq, uint32_t uts, int audio_level,
              uint32_t abs_send_time, const uint8_t *payload, int payload_len);
/* vtp_write for each of count downs; how many were sent */
int vtp_fanout(struct vtp_down *const *downs, int count, int marker, int64_t fseq,
               uint32_t uts, int audio_level, uint32_t abs_send_time, const uint8_t *payload,
               int payload_len);
/* vtp_send / vtp_fanout for downs at one temporal level of a VP8 up track: the wire
 * sequence number is seq16 = fseq - seq_skip + seq_offset (seq_skip: packets below fseq
 * the level drops) and the picture ID is shifted down by pid_skip (pictures before this
 * one the level drops); start/highest_fseq stay in the up track's numbering */
int vtp_send_skip(struct vtp_down *d, int marker, int64_t fseq, int64_t seq_skip, uint32_t uts,
                  int audio_level, uint32_t abs_send_time, const uint8_t *payload,
                  int payload_len, uint16_t pid_skip);
int vtp_fanout_skip(struct vtp_down *const *downs, int count, int marker, int64_t fseq,
                    int64_t seq_skip, uint32_t uts, int audio_level, uint32_t abs_send_time,
                    const uint8_t *payload, int payload_len, uint16_t pid_skip);
/* aim a sink at host:port (IPv4 or IPv6 literal) through fd; 0, or -1 (and fd -1) */
int vtp_sink_target(struct vtp_sink *s, int fd, const char *host, int port);
#endif
