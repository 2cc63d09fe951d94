/* hil_agent: agent protocol v1 framing, line buffer, dispatch and events. */
#include "hil_agent.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hil_port.h"

/* ---- CRC-32 (IEEE), table-free nibble variant: 64 bytes of table. ---- */
static const uint32_t crc_nibble[16] = {
    0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4, 0x4db26158, 0x5005713c,
    0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c, 0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
};

uint32_t hil_crc32(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = (const uint8_t *)data;
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0f];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0f];
    }
    return ~crc;
}

/* ---- generated payloads (PROTOCOL.md §5.4) ---- */
void hil_generate(char *out, size_t size, uint32_t seed)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint32_t x = seed ? seed : 0x9e3779b9u;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out[i] = alphabet[x & 63];
    }
}

/* ---- framing ---- */
static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static const char *find_magic(const char *s, size_t n)
{
    if (n < HIL_MAGIC_LEN) return NULL;
    for (size_t i = 0; i + HIL_MAGIC_LEN <= n; i++) {
        if (s[i] == '@' && memcmp(s + i, HIL_MAGIC, HIL_MAGIC_LEN) == 0) return s + i;
    }
    return NULL;
}

static hil_line_kind bad(hil_frame *out, hil_bad_reason r, const char *why)
{
    if (out->json) {
        cJSON_Delete(out->json);
        out->json = NULL;
    }
    out->reason = r;
    out->why = why;
    return HIL_LINE_BAD;
}

/* A JSON number that is a whole value in [0, max]. */
static bool whole_number(const cJSON *j, double max)
{
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    return d >= 0 && d <= max && d == (double)(uint64_t)d;
}

hil_line_kind hil_frame_decode(const char *line, size_t len, hil_frame *out)
{
    memset(out, 0, sizeof(*out));
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n')) len--;
    const char *m = find_magic(line, len);
    if (!m) return HIL_LINE_CONSOLE;
    out->text_len = (size_t)(m - line);
    const char *body = m + HIL_MAGIC_LEN;
    size_t blen = len - out->text_len - HIL_MAGIC_LEN;
    if (blen + HIL_MAGIC_LEN + 1 > HIL_MAX_FRAME) return bad(out, HIL_BAD_TOO_LONG, "frame too long");
    /* last " *" */
    size_t j = blen;
    bool found = false;
    while (j >= 2) {
        if (body[j - 2] == ' ' && body[j - 1] == '*') {
            found = true;
            break;
        }
        j--;
    }
    if (!found || blen - j != 8) return bad(out, HIL_BAD_SYNTAX, "malformed frame: no CRC trailer");
    size_t jslen = j - 2;
    uint32_t want = 0;
    for (size_t i = 0; i < 8; i++) {
        int v = hexval(body[j + i]);
        if (v < 0) return bad(out, HIL_BAD_SYNTAX, "malformed frame: CRC is not hex");
        want = (want << 4) | (uint32_t)v;
    }
    if (hil_crc32(0, body, jslen) != want) return bad(out, HIL_BAD_CRC, "frame CRC mismatch");
    const char *end = NULL;
    cJSON *js = cJSON_ParseWithLengthOpts(body, jslen, &end, 0);
    if (!js) return bad(out, HIL_BAD_SYNTAX, "malformed frame: invalid JSON");
    out->json = js;
    while (end && end < body + jslen && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')) end++;
    if (end != body + jslen) return bad(out, HIL_BAD_SYNTAX, "malformed frame: text after the JSON value");
    if (!cJSON_IsObject(js)) return bad(out, HIL_BAD_SYNTAX, "malformed frame: not a JSON object");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(js, "t");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(js, "id");
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(js, "op");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(js, "ev");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(js, "seq");
    if (t && !cJSON_IsString(t) && !cJSON_IsNull(t)) return bad(out, HIL_BAD_SYNTAX, "malformed frame: t is not a string");
    if (id && !cJSON_IsNull(id) && !whole_number(id, 4294967295.0)) return bad(out, HIL_BAD_SYNTAX, "malformed frame: id is not a uint32");
    if (seq && !cJSON_IsNull(seq) && !whole_number(seq, 18446744073709551615.0)) return bad(out, HIL_BAD_SYNTAX, "malformed frame: seq is not a uint64");
    if (op && !cJSON_IsString(op) && !cJSON_IsNull(op)) return bad(out, HIL_BAD_SYNTAX, "malformed frame: op is not a string");
    if (ev && !cJSON_IsString(ev) && !cJSON_IsNull(ev)) return bad(out, HIL_BAD_SYNTAX, "malformed frame: ev is not a string");
    const char *kind = cJSON_IsString(t) ? t->valuestring : "";
    if (strcmp(kind, "req") == 0) {
        if (!cJSON_IsString(op) || op->valuestring[0] == 0) return bad(out, HIL_BAD_SYNTAX, "malformed frame: request without op");
    } else if (strcmp(kind, "evt") == 0) {
        if (!cJSON_IsString(ev) || ev->valuestring[0] == 0) return bad(out, HIL_BAD_SYNTAX, "malformed frame: event without name");
    } else if (strcmp(kind, "res") != 0) {
        return bad(out, HIL_BAD_SYNTAX, "malformed frame: unknown kind");
    }
    out->kind = kind;
    return HIL_LINE_FRAME;
}

int hil_frame_encode(const char *json, size_t json_len, char *out, size_t cap)
{
    size_t n = HIL_MAGIC_LEN + json_len + 11;
    if (n > HIL_MAX_FRAME || n + 1 > cap) return -1;
    memcpy(out, HIL_MAGIC, HIL_MAGIC_LEN);
    memmove(out + HIL_MAGIC_LEN, json, json_len);
    snprintf(out + HIL_MAGIC_LEN + json_len, 12, " *%08lx\n", (unsigned long)hil_crc32(0, json, json_len));
    return (int)n;
}

/* ---- agent ---- */
void hil_agent_init(hil_agent *a, const hil_op *ops, size_t nops, void *ctx, const char *fw)
{
    memset(a, 0, sizeof(*a));
    a->ops = ops;
    a->nops = nops;
    a->ctx = ctx;
    a->fw = fw;
}

/* The output line: one buffer, used only under the UART lock. */
static char out_line[HIL_MAX_FRAME + 16];

static void write_locked(cJSON *obj)
{
    char *js = out_line + HIL_MAGIC_LEN;
    size_t cap = HIL_MAX_FRAME - HIL_MAGIC_LEN - 11 + 1; /* JSON + NUL */
    if (!cJSON_PrintPreallocated(obj, js, (int)cap, 0)) {
        /* Too large for a frame. A response shrinks to an error the host
         * can see; an event is dropped (its seq is used up, the host sees
         * the gap). */
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, "t"));
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
        if (!t || strcmp(t, "res") != 0) return;
        snprintf(js, cap, "{\"t\":\"res\",\"id\":%lu,\"err\":{\"code\":\"internal\",\"msg\":\"response too large for a frame\"}}",
                 cJSON_IsNumber(id) ? (unsigned long)id->valuedouble : 0UL);
    }
    size_t jl = strlen(js);
    int n = hil_frame_encode(js, jl, out_line, sizeof(out_line));
    if (n > 0) hil_port_uart_write(out_line, (size_t)n);
}

void hil_agent_send_json(hil_agent *a, cJSON *obj)
{
    (void)a;
    hil_port_uart_lock();
    write_locked(obj);
    hil_port_uart_unlock();
}

void hil_agent_respond(hil_agent *a, uint32_t id, cJSON *data)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        cJSON_Delete(data);
        return;
    }
    cJSON_AddStringToObject(o, "t", "res");
    if (id) cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddBoolToObject(o, "ok", 1);
    if (data) cJSON_AddItemToObject(o, "data", data);
    hil_agent_send_json(a, o);
    cJSON_Delete(o);
}

static void fail_v(hil_agent *a, uint32_t id, const char *code, const char *fmt, va_list ap)
{
    char msg[200];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    cJSON *o = cJSON_CreateObject();
    if (!o) return;
    cJSON_AddStringToObject(o, "t", "res");
    if (id) cJSON_AddNumberToObject(o, "id", id);
    cJSON *e = cJSON_AddObjectToObject(o, "err");
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "msg", msg);
    hil_agent_send_json(a, o);
    cJSON_Delete(o);
}

void hil_agent_fail(hil_agent *a, uint32_t id, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(a, id, code, fmt, ap);
    va_end(ap);
}

void hil_agent_event(hil_agent *a, const char *ev, cJSON *data)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        cJSON_Delete(data);
        a->seq++; /* the seq is used up: the host sees the loss */
        return;
    }
    hil_port_uart_lock();
    a->seq++;
    cJSON_AddStringToObject(o, "t", "evt");
    cJSON_AddNumberToObject(o, "seq", (double)a->seq);
    cJSON_AddNumberToObject(o, "up", (double)hil_port_uptime_ms());
    cJSON_AddStringToObject(o, "ev", ev);
    if (data) cJSON_AddItemToObject(o, "data", data);
    write_locked(o);
    hil_port_uart_unlock();
    cJSON_Delete(o);
}

void hil_agent_log(hil_agent *a, char level, const char *fmt, ...)
{
    (void)a;
    char buf[256];
    int n = snprintf(buf, sizeof(buf), "%c (%llu) hilrun-c: ", level, (unsigned long long)hil_port_uptime_ms());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 2, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(buf) - 3) len = sizeof(buf) - 3;
    /* A log line never carries the magic: it would look like a frame. */
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n' || buf[i] == '\r') buf[i] = ' ';
    buf[len++] = '\r';
    buf[len++] = '\n';
    hil_port_uart_lock();
    hil_port_uart_write(buf, len);
    hil_port_uart_unlock();
}

void hil_result_err(hil_result *r, const char *code, const char *fmt, ...)
{
    r->kind = HIL_RES_ERR;
    r->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
    va_end(ap);
}

void hil_agent_line(hil_agent *a, const char *line, size_t len)
{
    hil_frame f;
    switch (hil_frame_decode(line, len, &f)) {
    case HIL_LINE_CONSOLE:
        return;
    case HIL_LINE_BAD:
        a->bad_frames++;
        hil_agent_fail(a, 0, HIL_ERR_BAD_FRAME, "%s", f.why);
        return;
    case HIL_LINE_FRAME:
        break;
    }
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(f.json, "id");
    uint32_t id = cJSON_IsNumber(idj) ? (uint32_t)idj->valuedouble : 0;
    if (strcmp(f.kind, "req") != 0) {
        a->bad_frames++;
        hil_agent_fail(a, id, HIL_ERR_BAD_FRAME, "device accepts only requests, got \"%s\"", f.kind);
        cJSON_Delete(f.json);
        return;
    }
    a->requests++;
    const char *op = cJSON_GetObjectItemCaseSensitive(f.json, "op")->valuestring;
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(f.json, "args");
    if (cJSON_IsNull(args)) args = NULL;
    const hil_op *h = NULL;
    for (size_t i = 0; i < a->nops; i++) {
        if (strcmp(a->ops[i].op, op) == 0) {
            h = &a->ops[i];
            break;
        }
    }
    if (!h) {
        hil_agent_fail(a, id, HIL_ERR_UNKNOWN_OP, "operation \"%.64s\" is not implemented by %s", op, a->fw);
        cJSON_Delete(f.json);
        return;
    }
    if (args && !cJSON_IsObject(args)) {
        hil_agent_fail(a, id, HIL_ERR_BAD_ARGS, "args of %s must be an object", op);
        cJSON_Delete(f.json);
        return;
    }
    hil_result r;
    memset(&r, 0, sizeof(r));
    h->fn(a->ctx, id, args, &r);
    switch (r.kind) {
    case HIL_RES_OK:
        hil_agent_respond(a, id, r.data);
        if (a->after_response) a->after_response(a->ctx, id, h->op);
        break;
    case HIL_RES_ERR:
        hil_agent_fail(a, id, r.code ? r.code : HIL_ERR_INTERNAL, "%s", r.msg);
        break;
    case HIL_RES_DEFERRED:
        break;
    }
    cJSON_Delete(f.json);
}

void hil_agent_feed(hil_agent *a, const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (c == '\n') {
            if (a->overflow) {
                /* Discarded to here: a frame that long is bad_frame. */
                if (find_magic(a->line, a->len)) {
                    a->bad_frames++;
                    hil_agent_fail(a, 0, HIL_ERR_BAD_FRAME, "frame too long");
                }
            } else {
                hil_agent_line(a, a->line, a->len);
            }
            a->len = 0;
            a->overflow = false;
            continue;
        }
        if (a->overflow) continue;
        if (a->len >= HIL_MAX_FRAME) {
            a->overflow = true;
            continue;
        }
        a->line[a->len++] = c;
    }
}

/* ---- heap accounting ---- */
static size_t mem_cur, mem_peak, payload_peak;

typedef union {
    size_t n;
    max_align_t align;
} mem_hdr;

void *hil_mem_alloc(size_t n)
{
    mem_hdr *h = malloc(sizeof(mem_hdr) + n);
    if (!h) return NULL;
    h->n = n;
    mem_cur += n;
    if (mem_cur > mem_peak) mem_peak = mem_cur;
    return h + 1;
}

void hil_mem_free(void *p)
{
    if (!p) return;
    mem_hdr *h = (mem_hdr *)p - 1;
    mem_cur -= h->n;
    free(h);
}

void hil_mem_install(void)
{
    cJSON_Hooks hooks = {hil_mem_alloc, hil_mem_free};
    cJSON_InitHooks(&hooks);
}

size_t hil_mem_current(void) { return mem_cur; }
size_t hil_mem_peak(void) { return mem_peak; }
void hil_mem_note_payload(size_t n)
{
    if (n > payload_peak) payload_peak = n;
}
size_t hil_mem_payload_peak(void) { return payload_peak; }
