/*
 * A C host for docweave: opens its own TCP connection to `docweave serve
 * --tcp`, applies a Loro update it was given, syncs, and writes the
 * document's snapshot. Run by shell/ffi/tests/c_program.rs.
 *
 * usage: sync_tcp HOST PORT DB UPDATE_FILE OUT_FILE DOC
 * exit 0 once the server acknowledged the update and the server's own
 * changes arrived; 1 on any failure (it says which on stderr).
 */
#include "docweave.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static int fail(const char *what) {
    fprintf(stderr, "sync_tcp: %s: %s\n", what, dw_last_error());
    return 1;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: sync_tcp HOST PORT DB UPDATE_FILE OUT_FILE DOC\n");
        return 2;
    }
    const char *host = argv[1], *db = argv[3], *update_path = argv[4], *out_path = argv[5], *doc = argv[6];
    int port = atoi(argv[2]);
    size_t update_len = 0;
    unsigned char *update = read_file(update_path, &update_len);
    if (!update) { fprintf(stderr, "sync_tcp: cannot read %s\n", update_path); return 1; }

    char config[512];
    snprintf(config, sizeof config, "{\"peer\":\"c-host\",\"sqlite\":\"%s\"}", db);
    dw_node *node = NULL;
    if (dw_node_new(config, now_ms(), &node) != DW_OK) return fail("dw_node_new");
    if (dw_connect(node, "server", now_ms()) != DW_OK) return fail("dw_connect");
    if (dw_open(node, doc, now_ms()) != DW_OK) return fail("dw_open");

    int fd = -1;
    uint64_t channel = 0;
    size_t cap = 1 << 16, have = 0;
    uint8_t *in = malloc(cap);
    int applied = 0, acked = 0, changed = 0;
    uint64_t deadline = now_ms() + 20000;

    while (!(acked && changed)) {
        if (now_ms() > deadline) { fprintf(stderr, "sync_tcp: timed out (applied %d acked %d changed %d)\n", applied, acked, changed); return 1; }
        dw_output o;
        int32_t rc;
        while ((rc = dw_poll(node, now_ms(), &o)) == DW_OK) {
            if (o.kind == DW_OUT_DIAL) {
                fd = socket(AF_INET, SOCK_STREAM, 0);
                struct sockaddr_in a = {0};
                a.sin_family = AF_INET;
                a.sin_port = htons((uint16_t)port);
                inet_pton(AF_INET, host, &a.sin_addr);
                if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 1; }
                if (dw_channel_opened(node, o.text, now_ms(), &channel) != DW_OK) return fail("dw_channel_opened");
            } else if (o.kind == DW_OUT_TRANSMIT) {
                if (write_all(fd, o.bytes, o.len) != 0) { perror("write"); return 1; }
            } else if (o.kind == DW_OUT_CLOSE) {
                fprintf(stderr, "sync_tcp: the node closed its connection: %s\n", o.text ? o.text : "");
                return 1;
            } else if (o.kind == DW_OUT_EVENT && o.text) {
                if (strstr(o.text, "\"DocReady\"") && !applied) {
                    if (dw_apply_update(node, doc, update, update_len, now_ms()) != DW_OK) return fail("dw_apply_update");
                    applied = 1;
                } else if (strstr(o.text, "\"AckedByRemote\"") && applied) {
                    acked = 1;
                } else if (strstr(o.text, "\"DocChanged\"") && strstr(o.text, "\"from\":\"server\"")) {
                    changed = 1;
                }
            }
        }
        if (rc != DW_NOTHING) return fail("dw_poll");

        uint64_t at = 0;
        if (dw_next_timeout(node, &at) != DW_OK) return fail("dw_next_timeout");
        uint64_t t = now_ms();
        int wait = at == UINT64_MAX ? 200 : (at > t ? (int)(at - t) : 0);
        if (wait > 200) wait = 200;
        if (fd < 0) { usleep((useconds_t)wait * 1000); dw_timeout(node, now_ms()); continue; }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int ready = poll(&p, 1, wait);
        if (ready == 0) { dw_timeout(node, now_ms()); continue; }
        if (have == cap) { cap *= 2; in = realloc(in, cap); }
        ssize_t r = read(fd, in + have, cap - have);
        if (r <= 0) { fprintf(stderr, "sync_tcp: the server closed the connection\n"); return 1; }
        have += (size_t)r;
        /* Whole frames: 6 header bytes, the payload length in the last 4. */
        for (;;) {
            if (have < 6) break;
            size_t payload = (size_t)in[2] | (size_t)in[3] << 8 | (size_t)in[4] << 16 | (size_t)in[5] << 24;
            size_t whole = 6 + payload;
            if (whole > cap) { cap = whole; in = realloc(in, cap); }
            if (have < whole) break;
            if (dw_feed_frame(node, channel, in, whole, now_ms()) != DW_OK) return fail("dw_feed_frame");
            memmove(in, in + whole, have - whole);
            have -= whole;
        }
    }

    dw_bytes snapshot;
    if (dw_export(node, doc, &snapshot) != DW_OK) return fail("dw_export");
    FILE *out = fopen(out_path, "wb");
    if (!out || fwrite(snapshot.ptr, 1, snapshot.len, out) != snapshot.len) { fprintf(stderr, "sync_tcp: cannot write %s\n", out_path); return 1; }
    fclose(out);
    dw_bytes_free(snapshot);
    dw_node_free(node);
    close(fd);
    free(in);
    free(update);
    return 0;
}
