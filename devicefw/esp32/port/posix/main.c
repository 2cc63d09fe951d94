#define _DEFAULT_SOURCE
/* hilfw: the hilrun C firmware for the host (POSIX port). Same arguments
 * as the Go firmware: --uart PATH --state DIR --board NAME. Exit status 3
 * asks the virtual board for a soft reset. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "hil_agent.h"
#include "hil_port.h"
#include "port_posix.h"

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: hilfw --uart PATH --state DIR [--board NAME]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *uart_path = NULL, *state = NULL, *board = "sim";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) == 0) a += 1; /* -uart and --uart, as Go's flag package */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char *eq = strchr(a, '=');
        char name[32];
        snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
        if (eq) v = eq + 1;
        else i++;
        if (!v) return usage();
        if (strcmp(name, "-uart") == 0) uart_path = v;
        else if (strcmp(name, "-state") == 0) state = v;
        else if (strcmp(name, "-board") == 0) board = v;
        else {
            fprintf(stderr, "hilfw: unknown flag %s (defect switches and misbehaviour modes are not supported)\n", argv[i - (eq ? 0 : 1)]);
            return 2;
        }
    }
    if (!uart_path || !state) return usage();
    int fd = open(uart_path, O_RDWR | O_NOCTTY);
    if (fd < 0) {
        fprintf(stderr, "hilfw: %s: %s\n", uart_path, strerror(errno));
        return 1;
    }
    struct termios tio;
    if (isatty(fd)) {
        if (tcgetattr(fd, &tio) != 0) return 1;
        cfmakeraw(&tio);
        if (tcsetattr(fd, TCSANOW, &tio) != 0) return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    posix_port_init(state, board, fd);
    hil_port_core_lock();
    hil_core_boot();
    hil_port_core_unlock();
    char buf[512];
    int wake = posix_port_wake_fd();
    size_t reported_peak = 0;
    while (!stop && !posix_port_reset_requested()) {
        struct pollfd pf[2] = {{.fd = fd, .events = POLLIN, .revents = 0}, {.fd = wake, .events = POLLIN, .revents = 0}};
        hil_port_core_lock();
        int timeout = (int)hil_core_tick_due_ms(20);
        hil_port_core_unlock();
        int n = poll(pf, 2, timeout);
        if (n > 0 && (pf[0].revents & POLLIN)) {
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r > 0) {
                hil_port_core_lock();
                hil_core_uart_input(buf, (size_t)r);
                hil_port_core_unlock();
            } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                break;
            }
        } else if (n > 0 && (pf[0].revents & (POLLHUP | POLLERR))) {
            usleep(20000); /* the host side of the pty is away; keep waiting */
        }
        hil_port_core_lock();
        posix_port_drain();
        hil_core_tick();
        size_t peak = hil_mem_peak();
        hil_port_core_unlock();
        if (peak >= reported_peak + 1024) { /* the board may end us with SIGKILL: say it as it grows */
            reported_peak = peak;
            fprintf(stderr, "hilfw: core heap peak %zu bytes so far; largest generated payload buffer %zu bytes\n", peak, hil_mem_payload_peak());
        }
    }
    posix_port_save_rtc();
    hil_port_core_lock();
    fprintf(stderr, "hilfw: core heap peak %zu bytes (now %zu); largest generated payload buffer %zu bytes\n", hil_mem_peak(), hil_mem_current(),
            hil_mem_payload_peak());
    hil_port_core_unlock();
    if (posix_port_reset_requested()) {
        tcdrain(fd);
        _exit(HIL_EXIT_RESET); /* no graceful MQTT teardown: a rebooting chip just drops TCP */
    }
    return 0;
}
