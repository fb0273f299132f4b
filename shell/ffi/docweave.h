/*
 * docweave.h: the C API of libdocweave_ffi, a docweave node the host drives.
 *
 * The host owns the sockets, the clock and the loop; the node decides who
 * gets which document data. Every call takes `now_ms`, the host's monotonic
 * clock in milliseconds. A host loop:
 *
 *   dw_node *node; dw_node_new("{\"peer\":\"app-1\",\"sqlite\":\"app.db\"}", now(), &node);
 *   dw_connect(node, "server", now());  dw_open(node, "notes", now());
 *   for (;;) {
 *     dw_output o;
 *     while (dw_poll(node, now(), &o) == DW_OK) {
 *       DW_OUT_DIAL:     connect to the remote named o.text, then dw_channel_opened()
 *       DW_OUT_TRANSMIT: write o.bytes[0..o.len) to the connection of o.channel
 *       DW_OUT_CLOSE:    close the connection of o.channel
 *       DW_OUT_EVENT:    o.text is a JSON event ({"DocReady":{...}}, {"DocChanged":{...}}, ...)
 *     }
 *     wait for a socket or until dw_next_timeout(); then dw_feed_frame() what
 *     arrived, dw_channel_closed() what closed, dw_timeout() when due.
 *   }
 *
 * Rules:
 * - Every function returns DW_OK (0) or an error code, and never aborts;
 *   dw_last_error() says why (valid on this thread until the next call).
 * - Buffers passed in are borrowed for the call. The pointers of a
 *   dw_output stay valid until the next dw_poll or dw_node_free. Bytes from
 *   dw_export belong to the caller: give them back with dw_bytes_free.
 * - One node is used by one thread at a time.
 * - On a plain TCP connection (`docweave serve --tcp ADDR`) frames come back
 *   to back: 6 header bytes (the last 4 the payload length, little endian),
 *   then the payload. On docweave's WebSocket endpoint each binary message
 *   carries a one-byte tag first (0: a whole frame).
 * - The store is built in (SQLite at "sqlite", else memory); its jobs run
 *   inside dw_poll.
 */
#ifndef DOCWEAVE_H
#define DOCWEAVE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DW_OK 0
#define DW_ERR_NULL 1
#define DW_ERR_INVALID 2
#define DW_ERR_STORE 3
/* docweave failed inside (a bug): every later call on that node fails the
   same way; free it and make another. */
#define DW_ERR_PANIC 4
#define DW_NOTHING 5

#define DW_OUT_TRANSMIT 1
#define DW_OUT_CLOSE 2
#define DW_OUT_DIAL 3
#define DW_OUT_EVENT 4

typedef struct DwNode dw_node;

typedef struct dw_output {
    int32_t kind;         /* DW_OUT_* */
    uint64_t channel;     /* transmit, close */
    const uint8_t *bytes; /* transmit: the frame; else NULL */
    size_t len;
    const char *text;     /* close: why; dial: the remote; event: JSON; else NULL */
} dw_output;

typedef struct dw_bytes {
    uint8_t *ptr;
    size_t len;
} dw_bytes;

const char *dw_last_error(void);

int32_t dw_node_new(const char *config_json, uint64_t now_ms, dw_node **out);
int32_t dw_node_free(dw_node *node);

int32_t dw_connect(dw_node *node, const char *remote, uint64_t now_ms);
int32_t dw_set_token(dw_node *node, const char *remote, const char *token, uint64_t now_ms);
int32_t dw_channel_opened(dw_node *node, const char *remote, uint64_t now_ms, uint64_t *channel);
int32_t dw_feed_frame(dw_node *node, uint64_t channel, const uint8_t *bytes, size_t len, uint64_t now_ms);
int32_t dw_channel_closed(dw_node *node, uint64_t channel, uint64_t now_ms);
int32_t dw_timeout(dw_node *node, uint64_t now_ms);
int32_t dw_next_timeout(dw_node *node, uint64_t *at);

int32_t dw_open(dw_node *node, const char *doc, uint64_t now_ms);
int32_t dw_apply_update(dw_node *node, const char *doc, const uint8_t *bytes, size_t len, uint64_t now_ms);
int32_t dw_export(dw_node *node, const char *doc, dw_bytes *out);
int32_t dw_bytes_free(dw_bytes bytes);

int32_t dw_poll(dw_node *node, uint64_t now_ms, dw_output *out);

#ifdef __cplusplus
}
#endif

#endif /* DOCWEAVE_H */
