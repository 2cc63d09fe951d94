/* hil_agent: the agent protocol v1 (devicefw/PROTOCOL.md) in portable C11.
 *
 * Framing (@hil1 <json> *<crc32>), the 4 KB line buffer, request dispatch,
 * error answers and events with seq/up. No platform headers: the agent
 * reaches the board only through hil_port.h. */
#ifndef HIL_AGENT_H
#define HIL_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cJSON.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HIL_PROTO_VERSION 1
#define HIL_MAGIC "@hil1 "
#define HIL_MAGIC_LEN 6
#define HIL_MAX_FRAME 4096

/* CRC-32 (IEEE 802.3, zlib's crc32()). crc is 0 for a fresh sum. */
uint32_t hil_crc32(uint32_t crc, const void *data, size_t n);

/* What one received line (without '\n') is. */
typedef enum {
    HIL_LINE_CONSOLE = 0, /* no magic: console text, not for the agent */
    HIL_LINE_FRAME,       /* a valid frame; *json is set (caller frees) */
    HIL_LINE_BAD,         /* magic but not a valid frame: answer bad_frame */
} hil_line_kind;

/* Why a HIL_LINE_BAD line was refused (golden vectors "reason"). */
typedef enum {
    HIL_BAD_NONE = 0,
    HIL_BAD_CRC,
    HIL_BAD_SYNTAX,
    HIL_BAD_TOO_LONG,
} hil_bad_reason;

typedef struct {
    size_t text_len;       /* console text before the magic */
    cJSON *json;           /* the parsed object (HIL_LINE_FRAME) */
    const char *kind;      /* "req", "res" or "evt" (points into json) */
    hil_bad_reason reason; /* HIL_LINE_BAD */
    const char *why;       /* static text for the bad_frame message */
} hil_frame;

/* Decode one line (a trailing "\r" is ignored). */
hil_line_kind hil_frame_decode(const char *line, size_t len, hil_frame *out);

/* Encode: magic, json, " *", crc, "\n" into out (NUL-terminated). Returns
 * the line length, or -1 when it would exceed HIL_MAX_FRAME or cap. */
int hil_frame_encode(const char *json, size_t json_len, char *out, size_t cap);

/* Generated payload of PROTOCOL.md §5.4. */
void hil_generate(char *out, size_t size, uint32_t seed);

/* Error codes (PROTOCOL.md §2.1). */
#define HIL_ERR_BAD_FRAME "bad_frame"
#define HIL_ERR_UNKNOWN_OP "unknown_op"
#define HIL_ERR_BAD_ARGS "bad_args"
#define HIL_ERR_BUSY "busy"
#define HIL_ERR_NOT_CONNECTED "not_connected"
#define HIL_ERR_TIMEOUT "timeout"
#define HIL_ERR_UNSUPPORTED "unsupported"
#define HIL_ERR_REJECTED "rejected"
#define HIL_ERR_INTERNAL "internal"

/* The result a handler gives. A handler either answers now (ok, with data
 * it hands over, or err) or defers: it keeps the id and answers later with
 * hil_agent_respond / hil_agent_fail. */
typedef enum { HIL_RES_OK, HIL_RES_ERR, HIL_RES_DEFERRED } hil_res_kind;

typedef struct {
    hil_res_kind kind;
    cJSON *data;      /* HIL_RES_OK: owned by the agent after return; may be NULL */
    const char *code; /* HIL_RES_ERR */
    char msg[160];    /* HIL_RES_ERR */
} hil_result;

typedef void (*hil_handler)(void *ctx, uint32_t id, const cJSON *args, hil_result *res);

typedef struct {
    const char *op;
    hil_handler fn;
} hil_op;

typedef struct hil_agent {
    char line[HIL_MAX_FRAME + 1]; /* the one 4 KB line buffer */
    size_t len;
    bool overflow;    /* discarding to the next '\n' */
    uint64_t seq;     /* last event seq of this boot */
    const hil_op *ops;
    size_t nops;
    void *ctx;        /* handed to every handler */
    const char *fw;   /* firmware name for unknown_op messages */
    void (*after_response)(void *ctx, uint32_t id, const char *op); /* e.g. reset */
    /* counters */
    uint32_t bad_frames;
    uint32_t requests;
} hil_agent;

void hil_agent_init(hil_agent *a, const hil_op *ops, size_t nops, void *ctx, const char *fw);

/* Feed bytes read from the UART. */
void hil_agent_feed(hil_agent *a, const char *buf, size_t n);

/* Handle one complete line (without '\n'). */
void hil_agent_line(hil_agent *a, const char *line, size_t len);

/* Answers and events. data is consumed (deleted) in every case. */
void hil_agent_respond(hil_agent *a, uint32_t id, cJSON *data);
void hil_agent_fail(hil_agent *a, uint32_t id, const char *code, const char *fmt, ...);
void hil_agent_event(hil_agent *a, const char *ev, cJSON *data);

/* A console log line, ESP-IDF style: "I (123) hilrun-c: msg\r\n". Never
 * pass secrets. */
void hil_agent_log(hil_agent *a, char level, const char *fmt, ...);

/* Write a JSON object as one frame under the UART lock. */
void hil_agent_send_json(hil_agent *a, cJSON *obj);

/* Handler helpers. */
void hil_result_err(hil_result *r, const char *code, const char *fmt, ...);

/* Heap accounting of the core: every allocation of hil_agent/hil_iothub
 * and of cJSON (hooks set by hil_mem_install) goes through these, so the
 * core's current and peak heap can be measured on any port. Call under the
 * core lock. Large generated payloads (telemetry gen) are counted apart. */
void *hil_mem_alloc(size_t n);
void hil_mem_free(void *p);
void hil_mem_install(void);
size_t hil_mem_current(void);
size_t hil_mem_peak(void);
void hil_mem_note_payload(size_t n); /* a transient payload buffer of n bytes */
size_t hil_mem_payload_peak(void);

#ifdef __cplusplus
}
#endif
#endif
