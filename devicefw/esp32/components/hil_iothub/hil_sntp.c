/* SNTP (RFC 4330) client packets: request building and answer parsing. */
#include "hil_sntp.h"

#include <stdio.h>
#include <string.h>

#define NTP_EPOCH_OFFSET 2208988800ULL

uint64_t hil_sntp_ntp_from_ms(int64_t ms)
{
    uint64_t secs = ((uint64_t)(ms / 1000) + NTP_EPOCH_OFFSET) & 0xffffffffULL;
    /* rounded up, so that hil_sntp_ms_from_ntp (which truncates) gives ms back */
    uint64_t frac = (((uint64_t)(ms % 1000) << 32) + 999) / 1000;
    return secs << 32 | frac;
}

int64_t hil_sntp_ms_from_ntp(uint64_t ts)
{
    int64_t secs = (int64_t)(ts >> 32);
    if ((secs & 0x80000000LL) == 0) secs += 1LL << 32; /* era 1 (RFC 4330 section 3) */
    return (secs - (int64_t)NTP_EPOCH_OFFSET) * 1000 + (int64_t)(((ts & 0xffffffffULL) * 1000) >> 32);
}

static uint64_t be64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | b[i];
    return v;
}

uint64_t hil_sntp_request(unsigned char pkt[HIL_SNTP_PACKET], int64_t rtc_ms)
{
    memset(pkt, 0, HIL_SNTP_PACKET);
    pkt[0] = 0 << 6 | 4 << 3 | 3; /* LI 0, version 4, mode 3 (client) */
    uint64_t sent = hil_sntp_ntp_from_ms(rtc_ms);
    if (sent == 0) sent = 1; /* 0 means "no timestamp" */
    for (int i = 0; i < 8; i++) pkt[40 + i] = (unsigned char)(sent >> (56 - 8 * i));
    return sent;
}

hil_sntp_status hil_sntp_parse(const unsigned char *buf, size_t n, uint64_t sent, int64_t elapsed_ms, int64_t *unix_ms,
                               char kiss[5], char *err, size_t errcap)
{
    kiss[0] = 0;
    if (errcap) err[0] = 0;
    if (n < HIL_SNTP_PACKET || (buf[0] & 7) != 4 || be64(buf + 24) != sent) return HIL_SNTP_IGNORE;
    if (buf[1] == 0) {
        int k = 0;
        while (k < 4 && buf[12 + k] >= 0x20 && buf[12 + k] < 0x7f) {
            kiss[k] = (char)buf[12 + k];
            k++;
        }
        kiss[k] = 0;
        if (!kiss[0]) snprintf(kiss, 5, "?");
        return HIL_SNTP_KISS;
    }
    if (buf[0] >> 6 == 3 || buf[1] > 15) {
        snprintf(err, errcap, "server not synchronised (leap %d, stratum %d)", buf[0] >> 6, buf[1]);
        return HIL_SNTP_ERROR;
    }
    uint64_t recv_ts = be64(buf + 32), xmit_ts = be64(buf + 40);
    if (xmit_ts == 0) {
        snprintf(err, errcap, "answer without a transmit timestamp");
        return HIL_SNTP_ERROR;
    }
    int64_t server_time = hil_sntp_ms_from_ntp(xmit_ts) - hil_sntp_ms_from_ntp(recv_ts);
    int64_t delay = elapsed_ms - server_time;
    if (delay < 0) delay = 0;
    *unix_ms = hil_sntp_ms_from_ntp(xmit_ts) + delay / 2;
    return HIL_SNTP_OK;
}

int hil_sntp_split_server(const char *server, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *h = server, *end, *p = "123";
    if (server[0] == '[') { /* [v6] or [v6]:port */
        h = server + 1;
        end = strchr(h, ']');
        if (!end) end = h + strlen(h);
        else if (end[1] == ':') p = end + 2;
    } else {
        end = strrchr(server, ':');
        if (end) p = end + 1;
        else end = server + strlen(server);
    }
    size_t hl = (size_t)(end - h), pl = strlen(p);
    if (hl >= hcap || pl >= pcap) return -1;
    memcpy(host, h, hl);
    host[hl] = 0;
    memcpy(port, p, pl + 1);
    return 0;
}
