/* libFuzzer target: the agent's line buffer, frame parser and dispatch.
 * Any byte stream must be handled without crash, leak or UB, and every
 * frame the agent writes must fit HIL_MAX_FRAME and decode again. */
#include <string.h>

#include "hil_agent.h"
#include "test_port.h"

static void op_echo(void *ctx, uint32_t id, const cJSON *args, hil_result *r)
{
    (void)ctx;
    (void)id;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(args, "data");
    if (!cJSON_IsString(d)) {
        hil_result_err(r, HIL_ERR_BAD_ARGS, "echo needs data");
        return;
    }
    r->kind = HIL_RES_OK;
    r->data = cJSON_CreateObject();
    cJSON_AddStringToObject(r->data, "data", d->valuestring);
}
static const hil_op ops[] = {{"echo", op_echo}};
static hil_agent agent;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hil_agent_init(&agent, ops, 1, NULL, "fuzz");
    hil_test_uart_reset();
    /* one decode of the whole input as a line, then the stream path */
    hil_frame f;
    if (hil_frame_decode((const char *)data, size, &f) == HIL_LINE_FRAME) cJSON_Delete(f.json);
    hil_agent_feed(&agent, (const char *)data, size);
    hil_agent_feed(&agent, "\n", 1);
    size_t start = 0;
    for (size_t p = 0; p < hil_test_uart_len; p++) {
        if (hil_test_uart[p] != '\n') continue;
        if (p + 1 - start > HIL_MAX_FRAME) __builtin_trap();
        if (hil_frame_decode(hil_test_uart + start, p - start, &f) != HIL_LINE_FRAME) __builtin_trap();
        cJSON_Delete(f.json);
        start = p + 1;
    }
    return 0;
}
