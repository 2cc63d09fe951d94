/* A fake port for the agent's unit tests and the fuzz target: the UART is
 * a capture buffer, the clock a counter. */
#include <string.h>

#include "hil_port.h"
#include "test_port.h"

char hil_test_uart[1 << 16];
size_t hil_test_uart_len;
static int uart_locked;

void hil_test_uart_reset(void) { hil_test_uart_len = 0; }
void hil_port_uart_lock(void) { uart_locked++; }
void hil_port_uart_unlock(void) { uart_locked--; }
uint64_t hil_port_uptime_ms(void)
{
    static uint64_t t;
    return t += 7;
}
void hil_port_uart_write(const char *s, size_t n)
{
    if (uart_locked != 1) __builtin_trap(); /* every write is under the lock */
    if (hil_test_uart_len + n > sizeof(hil_test_uart)) hil_test_uart_len = 0;
    memcpy(hil_test_uart + hil_test_uart_len, s, n);
    hil_test_uart_len += n;
}
