/* The fan-out's structures and functions; build.py declares the subset Python uses. */
#ifndef VTP_FANOUT_H
#define VTP_FANOUT_H
#include <stdint.h>
#include <sys/socket.h>

#define VTP_BUFFER 2048
#define VTP_MAX_PACKET 1484 /* 1500-byte datagrams, less room for the SRTP auth tag */

/* libsrtp 2's srtp_protect(srtp_t, void *rtp, int *len): protects in place */
typedef int (*vtp_protect_fn)(void *ctx, void *rtp, int *len);

/* One subscriber connection's sending side: its SRTP session and nominated UDP path. */
struct vtp_sink {
    vtp_protect_fn protect;
    void *srtp;
    int fd; /* -1: send nothing */
    int last_errno;
    socklen_t addrlen;
    struct sockaddr_storage addr;
    uint64_t send_errors;
    uint64_t protect_errors;
    uint64_t oversize;
    uint8_t buf[VTP_BUFFER];
};

/* One outgoing stream: numbering offsets and negotiated ids of one subscriber. */
struct vtp_down {
    struct vtp_sink *sink;
    int64_t start_useq;   /* first up-track packet this subscriber gets */
    int64_t highest_useq; /* highest up-track packet sent */
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
};

int vtp_send(struct vtp_down *d, int marker, int64_t useq, uint32_t uts, int audio_level,
             uint32_t abs_send_time, const uint8_t *payload, int payload_len);
int vtp_write(struct vtp_down *d, int marker, int64_t useq, uint32_t uts, int audio_level,
              uint32_t abs_send_time, const uint8_t *payload, int payload_len);
int vtp_fanout(struct vtp_down *const *downs, int count, int marker, int64_t useq,
               uint32_t uts, int audio_level, uint32_t abs_send_time, const uint8_t *payload,
               int payload_len);
int vtp_sink_target(struct vtp_sink *s, int fd, const char *host, int port);
#endif
