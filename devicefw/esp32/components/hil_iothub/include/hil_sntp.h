/* SNTP (RFC 4330) client packets, pure functions of the portable core: the
 * ports only open the UDP socket, send, wait and receive. */
#ifndef HIL_SNTP_H
#define HIL_SNTP_H

#include <stddef.h>
#include <stdint.h>

#define HIL_SNTP_PACKET 48

typedef enum {
    HIL_SNTP_IGNORE, /* not the answer to this request (short, not mode 4, other originate): keep waiting */
    HIL_SNTP_OK,     /* *unix_ms is the server's time, half the round trip added */
    HIL_SNTP_KISS,   /* kiss-o'-death (stratum 0): kiss holds the code ("RATE", "DENY", ... or "?") */
    HIL_SNTP_ERROR,  /* unusable answer (unsynchronised server, no transmit timestamp): err says why */
} hil_sntp_status;

/* NTP 64-bit timestamp <-> Unix ms. ms_from_ntp maps seconds with the top
 * bit clear to era 1 (after 2036-02-07, RFC 4330 section 3). */
uint64_t hil_sntp_ntp_from_ms(int64_t unix_ms);
int64_t hil_sntp_ms_from_ntp(uint64_t ts);

/* Fills the 48-byte client request (LI 0, version 4, mode 3) with the RTC
 * time as transmit timestamp and returns that timestamp (never 0), which
 * the answer's originate timestamp must match. */
uint64_t hil_sntp_request(unsigned char pkt[HIL_SNTP_PACKET], int64_t rtc_ms);

/* Parses one received datagram for the request that returned `sent`;
 * elapsed_ms is the local time from send to this receipt. kiss must hold 5
 * bytes; err (errcap bytes) gets the reason of HIL_SNTP_ERROR. */
hil_sntp_status hil_sntp_parse(const unsigned char *buf, size_t n, uint64_t sent, int64_t elapsed_ms, int64_t *unix_ms,
                               char kiss[5], char *err, size_t errcap);

/* Splits "host", "host:port", "[v6]" or "[v6]:port" (port 123 by default).
 * Returns 0, or -1 when host or port does not fit. */
int hil_sntp_split_server(const char *server, char *host, size_t hcap, char *port, size_t pcap);

#endif
