/* Randomised inputs through fanout.c under AddressSanitizer and UBSan (built and run by
 * tests/sfu/test_fastpath.py): every field a subscriber negotiation or a publisher packet
 * can set, payloads of 0-2200 bytes (more than a datagram holds), with a stand-in
 * srtp_protect that appends a 16-byte tag as AES-GCM does. Prints "ok ..." when the
 * sanitizers found nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include "fanout.h"
static int fake_protect(void *ctx, void *rtp, int *len) { (void)ctx; /* append a 16-byte tag like GCM */ memset((char*)rtp + *len, 0xAA, 16); *len += 16; return 0; }
int main(int argc, char **argv) {
    int iterations = argc > 1 ? atoi(argv[1]) : 20000;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int rx = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(0x7f000001);
    bind(rx, (void*)&a, sizeof a); socklen_t l = sizeof a; getsockname(rx, (void*)&a, &l);
    struct vtp_sink *s = calloc(1, sizeof *s);
    s->protect = fake_protect; s->fd = -1;
    if (vtp_sink_target(s, fd, "127.0.0.1", ntohs(a.sin_port)) != 0) return 1;
    if (vtp_sink_target(s, fd, "::1", 5) != 0) return 2;
    if (vtp_sink_target(s, fd, "bogus", 5) != -1 || s->fd != -1) return 3;
    vtp_sink_target(s, fd, "127.0.0.1", ntohs(a.sin_port));
    uint8_t *payload = malloc(4000);
    for (int i = 0; i < 4000; i++) payload[i] = rand();
    struct vtp_down *downs[8];
    for (int i = 0; i < 8; i++) { downs[i] = calloc(1, sizeof **downs); downs[i]->sink = s; downs[i]->highest_fseq = -1; }
    srand(1);
    long sent = 0, refused = 0;
    for (int it = 0; it < iterations; it++) {
        for (int i = 0; i < 8; i++) {
            struct vtp_down *d = downs[i];
            d->mid_id = rand() % 16; d->mid_len = rand() % 17; memset(d->mid, 'm', 16);
            d->level_id = rand() % 16; d->abs_id = rand() % 16; d->payload_type = rand();
            d->seq_offset = rand(); d->ts_offset = rand(); d->ssrc = rand(); d->start_fseq = rand() % 100;
            d->vp8_rewrite = rand() % 2; d->pid_offset = rand(); d->tl0_offset = rand();
        }
        int len = rand() % 2200;
        int r = vtp_fanout(downs, 8, rand() % 2, rand() % 1000, rand(), (rand() % 300) - 40, rand(), payload + (rand() % 100), len);
        if (r) sent += r; else refused++;
        if (it % 1000 == 0) { char buf[2048]; while (recv(rx, buf, sizeof buf, MSG_DONTWAIT) > 0); }
    }
    printf("ok sent=%ld refused_calls=%ld oversize=%lu errors=%lu\n", sent, refused, (unsigned long)s->oversize, (unsigned long)s->send_errors);
    return 0;
}
