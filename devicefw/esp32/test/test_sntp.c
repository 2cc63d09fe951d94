/* SNTP (RFC 4330) packet unit tests: request, answers (normal, another
 * request's, kiss-o'-death, unsynchronised, no transmit time), era 1. */
#include <string.h>

#include "hil_sntp.h"
#include "vectors.h"

static void put64(unsigned char *b, uint64_t v)
{
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint64_t get64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | b[i];
    return v;
}

/* A server answer: mode 4, version 4, stratum, reference id, originate =
 * sent, receive and transmit from Unix ms. */
static void answer(unsigned char *a, int leap, int stratum, const char *refid, uint64_t sent, int64_t recv_ms, int64_t xmit_ms)
{
    memset(a, 0, HIL_SNTP_PACKET);
    a[0] = (unsigned char)(leap << 6 | 4 << 3 | 4);
    a[1] = (unsigned char)stratum;
    if (refid) memcpy(a + 12, refid, strlen(refid) < 4 ? strlen(refid) : 4);
    put64(a + 24, sent);
    put64(a + 32, hil_sntp_ntp_from_ms(recv_ms));
    put64(a + 40, hil_sntp_ntp_from_ms(xmit_ms));
}

int main(void)
{
    unsigned char req[HIL_SNTP_PACKET], a[HIL_SNTP_PACKET + 8];
    char kiss[5], err[120], host[64], port[16];
    int64_t t = 0;
    const int64_t rtc = 1767225600123LL; /* 2026-01-01T00:00:00.123Z */
    const int64_t srv = 1780000000000LL;

    /* request: LI 0, VN 4, mode 3, transmit = RTC, the rest zero */
    memset(req, 0xaa, sizeof(req));
    uint64_t sent = hil_sntp_request(req, rtc);
    CHECK(req[0] == 0x23, "first byte %#x", req[0]);
    CHECK(get64(req + 40) == sent && sent != 0, "transmit timestamp is the returned originate");
    CHECK((sent >> 32) == (uint64_t)(rtc / 1000) + 2208988800ULL, "seconds since 1900");
    CHECK(hil_sntp_ms_from_ntp(sent) == rtc, "round trip ms %lld", (long long)hil_sntp_ms_from_ntp(sent));
    int zero = 1;
    for (int i = 1; i < 40; i++) zero &= req[i] == 0;
    CHECK(zero, "bytes 1..39 zero");
    /* an RTC exactly at the NTP epoch of era 1 would give 0: never sent as 0 */
    CHECK(hil_sntp_request(req, (int64_t)(4294967296LL - 2208988800LL) * 1000) == 1, "zero originate avoided");

    /* normal answer: 40 ms round trip, 10 ms in the server -> +15 ms */
    sent = hil_sntp_request(req, rtc);
    answer(a, 0, 2, "GPS", sent, srv, srv + 10);
    CHECK(hil_sntp_parse(a, HIL_SNTP_PACKET, sent, 40, &t, kiss, err, sizeof(err)) == HIL_SNTP_OK, "normal: %s", err);
    CHECK(t == srv + 10 + 15, "normal: time %lld, want %lld", (long long)t, (long long)(srv + 25));
    CHECK(!kiss[0] && !err[0], "normal: no kiss, no error");
    /* longer datagrams (extension fields) are fine; negative delay clamps to 0 */
    CHECK(hil_sntp_parse(a, sizeof(a), sent, 5, &t, kiss, err, sizeof(err)) == HIL_SNTP_OK && t == srv + 10, "clamped: %lld",
          (long long)t);

    /* answers to another request, or not answers at all: ignored */
    answer(a, 0, 2, "GPS", sent + 1, srv, srv);
    CHECK(hil_sntp_parse(a, HIL_SNTP_PACKET, sent, 40, &t, kiss, err, sizeof(err)) == HIL_SNTP_IGNORE, "other originate");
    answer(a, 0, 2, "GPS", sent, srv, srv);
    a[0] = (unsigned char)((a[0] & ~7) | 3);
    CHECK(hil_sntp_parse(a, HIL_SNTP_PACKET, sent, 40, &t, kiss, err, sizeof(err)) == HIL_SNTP_IGNORE, "mode 3");
    answer(a, 0, 2, "GPS", sent, srv, srv);
    CHECK(hil_sntp_parse(a, HIL_SNTP_PACKET - 1, sent, 40, &t, kiss, err, sizeof(err)) == HIL_SNTP_IGNORE, "short");

    /* kiss-o'-death */
    answer(a, 0, 0, "RATE", sent, 0, 0);
    CHECK(hil_sntp_parse(a, HIL_SNTP_PACKET, sent, 40, &t, kiss, err, sizeof(err)) == HIL_SNTP_KISS && !strcmp(kiss, "RATE"),
          "RATE: %s", kiss);
    answer(a, 0, 0, "DENY", sent, 0, 0);
    CHECK(hil_sntp_parse(a, HIL_SNTP_PACKET, sent, 40, &t, kiss, err, sizeof(err)) == HIL_SNTP_KISS && !strcmp(kiss, "DENY"),
          "DENY: %s", kiss);
    answer(a, 3, 0, "\x01", sent, 0, 0); /* stratum 0 wins over leap 3; no printable code */
    CHECK(hil_sntp_parse(a, HIL_SNTP_PACKET, sent, 40, &t, kiss, err, sizeof(err)) == HIL_SNTP_KISS && !strcmp(kiss, "?"),
          "unprintable: %s", kiss);
    answer(a, 0, 0, "RATE", sent + 1, 0, 0); /* a kiss for another request is ignored too */
    CHECK(hil_sntp_parse(a, HIL_SNTP_PACKET, sent, 40, &t, kiss, err, sizeof(err)) == HIL_SNTP_IGNORE, "other kiss");

    /* unsynchronised: leap 3, or stratum above 15 */
    answer(a, 3, 2, "GPS", sent, srv, srv);
    CHECK(hil_sntp_parse(a, HIL_SNTP_PACKET, sent, 40, &t, kiss, err, sizeof(err)) == HIL_SNTP_ERROR &&
              strstr(err, "not synchronised (leap 3, stratum 2)"),
          "leap 3: %s", err);
    answer(a, 0, 16, "GPS", sent, srv, srv);
    CHECK(hil_sntp_parse(a, HIL_SNTP_PACKET, sent, 40, &t, kiss, err, sizeof(err)) == HIL_SNTP_ERROR &&
              strstr(err, "stratum 16"),
          "stratum 16: %s", err);
    answer(a, 0, 2, "GPS", sent, srv, srv);
    memset(a + 40, 0, 8);
    CHECK(hil_sntp_parse(a, HIL_SNTP_PACKET, sent, 40, &t, kiss, err, sizeof(err)) == HIL_SNTP_ERROR &&
              strstr(err, "transmit timestamp"),
          "no transmit: %s", err);

    /* era rollover (2036-02-07T06:28:16Z): seconds wrap to 0 and still map after 2036 */
    const int64_t wrap = (4294967296LL - 2208988800LL) * 1000;
    CHECK(hil_sntp_ms_from_ntp(0x0000000180000000ULL) == wrap + 1500, "era 1: %lld", (long long)hil_sntp_ms_from_ntp(0x0000000180000000ULL));
    CHECK(hil_sntp_ms_from_ntp(0xffffffff00000000ULL) == wrap - 1000, "end of era 0");
    CHECK(hil_sntp_ntp_from_ms(wrap + 1500) == 0x0000000180000000ULL, "to era 1");
    sent = hil_sntp_request(req, wrap - 1000);
    answer(a, 0, 1, "GPS", sent, wrap + 5000, wrap + 5000); /* server already in era 1 */
    CHECK(hil_sntp_parse(a, HIL_SNTP_PACKET, sent, 20, &t, kiss, err, sizeof(err)) == HIL_SNTP_OK && t == wrap + 5010,
          "across the rollover: %lld", (long long)(t - wrap));

    /* server names */
    CHECK(!hil_sntp_split_server("pool.ntp.org", host, sizeof(host), port, sizeof(port)) && !strcmp(host, "pool.ntp.org") &&
              !strcmp(port, "123"),
          "plain: %s %s", host, port);
    CHECK(!hil_sntp_split_server("127.0.0.1:40123", host, sizeof(host), port, sizeof(port)) && !strcmp(host, "127.0.0.1") &&
              !strcmp(port, "40123"),
          "host:port: %s %s", host, port);
    CHECK(!hil_sntp_split_server("[::1]:5123", host, sizeof(host), port, sizeof(port)) && !strcmp(host, "::1") &&
              !strcmp(port, "5123"),
          "[v6]:port: %s %s", host, port);
    CHECK(!hil_sntp_split_server("[fe80::1]", host, sizeof(host), port, sizeof(port)) && !strcmp(host, "fe80::1") &&
              !strcmp(port, "123"),
          "[v6]: %s %s", host, port);
    CHECK(hil_sntp_split_server("a-rather-long-host-name.example", host, 8, port, sizeof(port)) == -1, "host too long");

    printf("test_sntp: %d checks, %d failures\n", hil_test_checks, hil_test_failures);
    return hil_test_failures ? 1 : 0;
}
