#ifndef HIL_TEST_PORT_H
#define HIL_TEST_PORT_H
#include <stddef.h>
/* What the fake UART received since the last reset. */
extern char hil_test_uart[1 << 16];
extern size_t hil_test_uart_len;
void hil_test_uart_reset(void);
#endif
