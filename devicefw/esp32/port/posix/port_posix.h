/* POSIX port internals shared by main.c and port_posix.c. */
#ifndef HIL_PORT_POSIX_H
#define HIL_PORT_POSIX_H
#include <stdbool.h>

/* Exit status asking the virtual board for a soft reset (sim.ExitReset). */
#define HIL_EXIT_RESET 3

int posix_port_init(const char *state_dir, const char *board, int uart_fd);
void posix_port_save_rtc(void);
bool posix_port_reset_requested(void);
/* Self-pipe the main loop polls; readable when MQTT events wait. */
int posix_port_wake_fd(void);
/* Hand queued MQTT events to the core (core lock held). */
void posix_port_drain(void);
#endif
