/*
 * A C host fed poison by a malicious server: it opens "notes" from a server
 * on its own TCP connection; the server answers with Loro bytes that once
 * aborted the process. The host must hear an error event and go on: the
 * server's next, good update still arrives. Run by
 * shell/ffi/tests/c_program.rs against a fake server.
 *
 * usage: poison PORT
 * exit 0 once an error for "notes" was reported and a change arrived after
 * it; 1 otherwise (it says why on stderr).
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
    fprintf(stderr, "poison: %s: %s\n", what, dw_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: poison PORT\n");
        return 2;
    }
    dw_node *node = NULL;
    if (dw_node_new("{\"peer\":\"c-victim\"}", now_ms(), &node) != DW_OK) return fail("dw_node_new");
    if (dw_connect(node, "server", now_ms()) != DW_OK) return fail("dw_connect");
    if (dw_open(node, "notes", now_ms()) != DW_OK) return fail("dw_open");

    int fd = -1, errored = 0, changed = 0;
    uint64_t channel = 0, deadline = now_ms() + 20000;
    static uint8_t in[1 << 20];
    size_t have = 0;
    while (!changed) {
        if (now_ms() > deadline) {
            fprintf(stderr, "poison: timed out (error reported %d)\n", errored);
            return 1;
        }
        dw_output o;
        int32_t rc;
        while ((rc = dw_poll(node, now_ms(), &o)) == DW_OK) {
            if (o.kind == DW_OUT_DIAL) {
                struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
                inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
                fd = socket(AF_INET, SOCK_STREAM, 0);
                if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 1; }
                if (dw_channel_opened(node, o.text, now_ms(), &channel) != DW_OK) return fail("dw_channel_opened");
            } else if (o.kind == DW_OUT_TRANSMIT) {
                if (write(fd, o.bytes, o.len) != (ssize_t)o.len) { perror("write"); return 1; }
            } else if (o.kind == DW_OUT_EVENT && o.text) {
                if (strstr(o.text, "\"Error\"") && strstr(o.text, "notes")) {
                    printf("error reported: %s\n", o.text);
                    errored = 1;
                } else if (strstr(o.text, "\"DocChanged\"") && errored) {
                    changed = 1;
                }
            }
        }
        if (rc != DW_NOTHING) return fail("dw_poll");
        if (fd < 0) { usleep(10000); dw_timeout(node, now_ms()); continue; }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) { dw_timeout(node, now_ms()); continue; }
        ssize_t r = read(fd, in + have, sizeof in - have);
        if (r <= 0) { fprintf(stderr, "poison: the server closed the connection\n"); return 1; }
        have += (size_t)r;
        size_t whole;
        while (have >= 6 && have >= (whole = 6 + (in[2] | in[3] << 8 | in[4] << 16 | (size_t)in[5] << 24))) {
            if (dw_feed_frame(node, channel, in, whole, now_ms()) != DW_OK) return fail("dw_feed_frame");
            memmove(in, in + whole, have -= whole);
        }
    }
    dw_bytes snapshot;
    if (dw_export(node, "notes", &snapshot) != DW_OK) return fail("dw_export");
    printf("notes: %zu bytes after the poison\n", snapshot.len);
    dw_bytes_free(snapshot);
    return dw_node_free(node);
}
