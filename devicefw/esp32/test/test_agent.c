/* hil_agent unit tests against devicefw/testdata/agent.json. */
#include <stdlib.h>
#include <string.h>

#include "hil_agent.h"
#include "test_port.h"
#include "vectors.h"

static void test_crc(const cJSON *v)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(v, "crc"))
    {
        const char *d = hil_str(c, "data");
        char got[9];
        snprintf(got, sizeof(got), "%08lx", (unsigned long)hil_crc32(0, d, strlen(d)));
        CHECK(strcmp(got, hil_str(c, "crc")) == 0, "crc(%s) = %s, golden %s", d, got, hil_str(c, "crc"));
    }
    /* incremental */
    CHECK(hil_crc32(hil_crc32(0, "1234", 4), "56789", 5) == 0xcbf43926u, "incremental crc");
}

static void test_frames(const cJSON *v)
{
    const cJSON *f;
    static char line[HIL_MAX_FRAME + 64];
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(v, "frames"))
    {
        const char *name = hil_str(f, "name"), *js = hil_str(f, "json"), *want = hil_str(f, "line"), *text = hil_str(f, "text");
        int n = hil_frame_encode(js, strlen(js), line, sizeof(line));
        size_t tl = strlen(text);
        CHECK(n > 0 && strlen(want) == tl + (size_t)n && memcmp(want + tl, line, (size_t)n) == 0, "%s: encoded %s", name, line);
        hil_frame fr;
        hil_line_kind k = hil_frame_decode(want, strlen(want), &fr);
        CHECK(k == HIL_LINE_FRAME, "%s: decode kind %d (%s)", name, k, k == HIL_LINE_BAD ? fr.why : "");
        if (k != HIL_LINE_FRAME) continue;
        CHECK(fr.text_len == tl, "%s: text_len %zu", name, fr.text_len);
        CHECK(strcmp(fr.kind, hil_str(f, "t")) == 0, "%s: kind %s", name, fr.kind);
        CHECK(hil_num(fr.json, "id") == hil_num(f, "id"), "%s: id", name);
        CHECK(hil_num(fr.json, "seq") == hil_num(f, "seq"), "%s: seq", name);
        CHECK(strcmp(hil_str(fr.json, "op"), hil_str(f, "op")) == 0, "%s: op", name);
        CHECK(strcmp(hil_str(fr.json, "ev"), hil_str(f, "ev")) == 0, "%s: ev", name);
        cJSON_Delete(fr.json);
    }
}

static void test_bad(const cJSON *v)
{
    const cJSON *b;
    cJSON_ArrayForEach(b, cJSON_GetObjectItem(v, "badFrames"))
    {
        const char *name = hil_str(b, "name"), *line = hil_str(b, "line"), *want = hil_str(b, "want"), *reason = hil_str(b, "reason");
        hil_frame fr;
        hil_line_kind k = hil_frame_decode(line, strlen(line), &fr);
        if (strcmp(want, "console") == 0) {
            CHECK(k == HIL_LINE_CONSOLE, "%s: kind %d, want console", name, k);
            continue;
        }
        CHECK(k == HIL_LINE_BAD, "%s: kind %d, want bad", name, k);
        hil_bad_reason r = strcmp(reason, "crc") == 0 ? HIL_BAD_CRC : strcmp(reason, "too_long") == 0 ? HIL_BAD_TOO_LONG : HIL_BAD_SYNTAX;
        CHECK(fr.reason == r, "%s: reason %d (%s), golden %s", name, fr.reason, fr.why, reason);
        CHECK(fr.json == NULL, "%s: json kept", name);
    }
}

static void test_gen(const cJSON *v)
{
    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItem(v, "gen"))
    {
        size_t size = (size_t)hil_num(g, "size");
        char *out = malloc(size + 1);
        hil_generate(out, size, (uint32_t)hil_num(g, "seed"));
        out[size] = 0;
        CHECK(strcmp(out, hil_str(g, "out")) == 0, "gen(%zu, %u)", size, (unsigned)hil_num(g, "seed"));
        free(out);
    }
}

/* ---- the agent: dispatch, errors, events ---- */
static int echo_calls;
static void op_echo(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx;
    (void)id;
    echo_calls++;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(args, "data");
    if (!cJSON_IsString(d)) {
        hil_result_err(r, HIL_ERR_BAD_ARGS, "echo needs data");
        return;
    }
    r->kind = HIL_RES_OK;
    r->data = cJSON_CreateObject();
    cJSON_AddStringToObject(r->data, "data", d->valuestring);
}
static uint32_t deferred_id;
static void op_later(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx;
    (void)args;
    deferred_id = id;
    r->kind = HIL_RES_DEFERRED;
}
static const hil_op ops[] = {{"echo", op_echo}, {"later", op_later}};

/* Decode every frame the fake UART got; return the nth (0-based). */
static cJSON *uart_frame(int nth)
{
    size_t start = 0;
    int i = 0;
    for (size_t p = 0; p < hil_test_uart_len; p++) {
        if (hil_test_uart[p] != '\n') continue;
        hil_frame fr;
        if (hil_frame_decode(hil_test_uart + start, p - start, &fr) == HIL_LINE_FRAME) {
            if (i++ == nth) return fr.json;
            cJSON_Delete(fr.json);
        }
        start = p + 1;
    }
    return NULL;
}

static void send_req(hil_agent *a, const char *json)
{
    static char line[HIL_MAX_FRAME + 64];
    int n = hil_frame_encode(json, strlen(json), line, sizeof(line));
    /* split in two feeds to exercise the line buffer */
    hil_agent_feed(a, line, (size_t)n / 2);
    hil_agent_feed(a, line + n / 2, (size_t)n - (size_t)n / 2);
}

static const char *err_code(const cJSON *res)
{
    return hil_str(cJSON_GetObjectItem(res, "err"), "code");
}

static void test_agent(const cJSON *v)
{
    hil_agent *a = malloc(sizeof(*a));
    hil_agent_init(a, ops, 2, NULL, "test-fw");
    hil_test_uart_reset();
    send_req(a, "{\"t\":\"req\",\"id\":7,\"op\":\"echo\",\"args\":{\"data\":\"hi \\\"x\\\"\"}}");
    cJSON *r = uart_frame(0);
    CHECK(r && hil_num(r, "id") == 7 && hil_bool(r, "ok") && strcmp(hil_str(cJSON_GetObjectItem(r, "data"), "data"), "hi \"x\"") == 0, "echo answer");
    cJSON_Delete(r);

    hil_test_uart_reset();
    send_req(a, "{\"t\":\"req\",\"id\":8,\"op\":\"nope\"}");
    r = uart_frame(0);
    CHECK(r && hil_num(r, "id") == 8 && strcmp(err_code(r), "unknown_op") == 0, "unknown_op");
    cJSON_Delete(r);

    hil_test_uart_reset();
    send_req(a, "{\"t\":\"req\",\"id\":9,\"op\":\"echo\",\"args\":{}}");
    r = uart_frame(0);
    CHECK(r && hil_num(r, "id") == 9 && strcmp(err_code(r), "bad_args") == 0, "bad_args");
    cJSON_Delete(r);

    hil_test_uart_reset();
    send_req(a, "{\"t\":\"req\",\"id\":10,\"op\":\"echo\",\"args\":[1]}");
    r = uart_frame(0);
    CHECK(r && strcmp(err_code(r), "bad_args") == 0, "args not an object");
    cJSON_Delete(r);

    hil_test_uart_reset();
    send_req(a, "{\"t\":\"res\",\"id\":11,\"ok\":true}");
    r = uart_frame(0);
    CHECK(r && hil_num(r, "id") == 11 && strcmp(err_code(r), "bad_frame") == 0, "response sent to the device");
    cJSON_Delete(r);

    /* every bad golden frame is answered with bad_frame id 0; console lines are not answered */
    const cJSON *b;
    cJSON_ArrayForEach(b, cJSON_GetObjectItem(v, "badFrames"))
    {
        hil_test_uart_reset();
        const char *line = hil_str(b, "line");
        hil_agent_feed(a, line, strlen(line));
        hil_agent_feed(a, "\n", 1);
        r = uart_frame(0);
        if (strcmp(hil_str(b, "want"), "console") == 0) {
            CHECK(r == NULL, "%s: answered a console line", hil_str(b, "name"));
        } else {
            CHECK(r && hil_num(r, "id") == 0 && strcmp(err_code(r), "bad_frame") == 0, "%s: no bad_frame answer", hil_str(b, "name"));
        }
        cJSON_Delete(r);
    }

    /* an overlong line is discarded to its newline and answered once */
    hil_test_uart_reset();
    static char big[3 * HIL_MAX_FRAME];
    memset(big, 'x', sizeof(big));
    memcpy(big, HIL_MAGIC, HIL_MAGIC_LEN);
    hil_agent_feed(a, big, sizeof(big));
    hil_agent_feed(a, "\n", 1);
    send_req(a, "{\"t\":\"req\",\"id\":12,\"op\":\"echo\",\"args\":{\"data\":\"after\"}}");
    r = uart_frame(0);
    CHECK(r && strcmp(err_code(r), "bad_frame") == 0, "overflow answered bad_frame");
    cJSON_Delete(r);
    r = uart_frame(1);
    CHECK(r && hil_num(r, "id") == 12 && hil_bool(r, "ok"), "request after an overflow works");
    cJSON_Delete(r);
    r = uart_frame(2);
    CHECK(r == NULL, "exactly two frames after an overflow");
    cJSON_Delete(r);

    /* a frame glued to log text, CRLF */
    hil_test_uart_reset();
    const char *glued = "I (5) log: x";
    hil_agent_feed(a, glued, strlen(glued));
    static char line[HIL_MAX_FRAME];
    const char *js = "{\"t\":\"req\",\"id\":13,\"op\":\"echo\",\"args\":{\"data\":\"g\"}}";
    int n = hil_frame_encode(js, strlen(js), line, sizeof(line));
    line[n - 1] = '\r';
    line[n] = '\n';
    hil_agent_feed(a, line, (size_t)n + 1);
    r = uart_frame(0);
    CHECK(r && hil_num(r, "id") == 13 && hil_bool(r, "ok"), "glued frame with CRLF");
    cJSON_Delete(r);

    /* deferred answer */
    hil_test_uart_reset();
    send_req(a, "{\"t\":\"req\",\"id\":14,\"op\":\"later\"}");
    CHECK(hil_test_uart_len == 0 && deferred_id == 14, "deferred: nothing answered yet");
    hil_agent_fail(a, deferred_id, HIL_ERR_TIMEOUT, "gave up after %d ms", 50);
    r = uart_frame(0);
    CHECK(r && hil_num(r, "id") == 14 && strcmp(err_code(r), "timeout") == 0, "deferred failure");
    cJSON_Delete(r);

    /* events: seq from 1, +1 each, up present */
    hil_test_uart_reset();
    for (int i = 0; i < 3; i++) hil_agent_event(a, "log", NULL);
    for (int i = 0; i < 3; i++) {
        r = uart_frame(i);
        CHECK(r && hil_num(r, "seq") == i + 1 && strcmp(hil_str(r, "ev"), "log") == 0 && hil_num(r, "up") > 0, "event %d", i);
        cJSON_Delete(r);
    }

    /* a response too large for a frame turns into an internal error */
    hil_test_uart_reset();
    static char huge[HIL_MAX_FRAME];
    memset(huge, 'y', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = 0;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "data", huge);
    hil_agent_respond(a, 15, d);
    r = uart_frame(0);
    CHECK(r && hil_num(r, "id") == 15 && strcmp(err_code(r), "internal") == 0, "oversize response");
    cJSON_Delete(r);
    /* and every frame written fits MaxFrame */
    CHECK(hil_test_uart_len <= HIL_MAX_FRAME, "frame size");
    free(a);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_agent agent.json\n");
        return 2;
    }
    cJSON *v = hil_load_vectors(argv[1]);
    test_crc(v);
    test_frames(v);
    test_bad(v);
    test_gen(v);
    test_agent(v);
    cJSON_Delete(v);
    printf("test_agent: %d checks, %d failures\n", hil_test_checks, hil_test_failures);
    return hil_test_failures ? 1 : 0;
}
