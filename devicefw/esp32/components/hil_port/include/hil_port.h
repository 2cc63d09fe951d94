/* hil_port.h: the platform interface of the hilrun C firmware. The portable
 * core (hil_agent, hil_iothub) calls only these functions; a port
 * (port/posix, port/espidf) implements all of them and nothing else is
 * platform specific.
 *
 * Threading: the core is one state machine guarded by one lock
 * (hil_port_core_lock). A port calls every hil_core_* entry point below with
 * that lock held, from whatever task it likes (UART reader, MQTT callback,
 * periodic tick). UART writes take a separate lock (hil_port_uart_lock) so a
 * frame never interleaves with a log line of another task. */
#ifndef HIL_PORT_H
#define HIL_PORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- identification --------------------------------------------------- */
const char *hil_port_board(void);          /* "sim", "esp32", ... */
const char *hil_port_mqtt_lib(void);       /* "paho-c" or "esp-mqtt" */
const char *hil_port_mqtt_lib_version(void);
int hil_port_boot_count(void);

/* --- locks, time, randomness -------------------------------------------- */
void hil_port_core_lock(void);
void hil_port_core_unlock(void);
void hil_port_uart_lock(void);
void hil_port_uart_unlock(void);
uint64_t hil_port_uptime_ms(void);          /* since boot */
int64_t hil_port_rtc_ms(bool *synced);      /* real-time clock, Unix ms */
void hil_port_rtc_set(int64_t unix_ms, bool synced);
uint32_t hil_port_random(void);

/* --- UART ---------------------------------------------------------------- */
void hil_port_uart_write(const char *s, size_t n); /* whole buffer, blocking */

/* --- NVS: small named blobs that survive resets --------------------------- */
/* Returns the length stored (may exceed cap: then nothing is copied), or -1
 * when absent. */
int hil_port_nvs_get(const char *key, char *buf, size_t cap);
int hil_port_nvs_set(const char *key, const char *buf, size_t n); /* 0 ok */
void hil_port_nvs_erase(const char *key);

/* --- reboot ---------------------------------------------------------------- */
/* Called after the reset response is written; does not return on a board. */
void hil_port_reboot(void);

/* --- Wi-Fi (real boards; hosts return 0) ---------------------------------- */
int hil_port_wifi_start(const char *ssid, const char *password);

/* --- SNTP ------------------------------------------------------------------ */
/* Whether this port implements hil_port_sntp_query (the "sntp" capability). */
bool hil_port_has_sntp(void);
/* Start one query of server ("host:port"); the answer comes through
 * hil_core_sntp_result. Returns 0 when the query was started. */
int hil_port_sntp_query(const char *server, int timeout_ms);

/* --- factory trust bundle ----------------------------------------------- */
/* The roots built into the image (like ESP-IDF's certificate bundle), as
 * concatenated PEM, or NULL when the port carries none. The core trusts
 * them for the server chain in addition to the trust.add roots and lists
 * them in trust.list as "factory"; trust.clear leaves them alone. */
const char *hil_port_factory_trust_pem(void);

/* --- MQTT session over TLS -------------------------------------------------- */
typedef struct {
    const char *host;      /* hub host: TLS SNI and certificate name check */
    int port;
    const char *dial_host; /* where to connect (may differ from host) */
    int dial_port;
    const char *client_id;
    const char *username;
    const char *password;  /* SAS token, or NULL for X.509 */
    int keepalive_s;
    bool clean_session;
    const char *trust_pem; /* concatenated PEM roots (trust.add + factory) */
    const char *cert_pem;  /* device certificate chain (X.509) or NULL */
    const char *key_pem;
    const char *will_topic;   /* optional */
    const char *will_payload;
    /* Filters the port subscribes to right after a CONNACK without a
     * session present, before it reports hil_core_mqtt_connected and
     * before anything else is published on the connection. */
    const char *const *filters;
    const int *filter_qos;
    int nfilters;
} hil_mqtt_params;

/* Start connecting; the outcome comes through hil_core_mqtt_connected or
 * hil_core_mqtt_failed. Returns 0 when the attempt was started. */
int hil_port_mqtt_connect(const hil_mqtt_params *p);
/* Publish; *msg_id is the packet id for QoS 1 (PUBACK via
 * hil_core_mqtt_published). Returns 0 when handed to the session. */
int hil_port_mqtt_publish(const char *topic, const void *payload, size_t len, int qos, int *msg_id);
/* End the session: graceful sends DISCONNECT, else the TCP connection is
 * just closed. No callbacks for this session follow. */
void hil_port_mqtt_disconnect(bool graceful);

/* --- entry points of the core (call with hil_port_core_lock held) ---------- */
void hil_core_boot(void);
void hil_core_uart_input(const char *buf, size_t n);
void hil_core_tick(void); /* at least every 50 ms */
/* How long the port may wait before the next hil_core_tick: at most max_ms,
 * 0 when a timer is already due. */
uint32_t hil_core_tick_due_ms(uint32_t max_ms);
/* CONNACK accepted. */
void hil_core_mqtt_connected(bool session_present);
/* Attempt failed: rc is the CONNACK return code (1..5), 0 when no CONNACK
 * came (network), or -1 for a TLS verification failure of the server. */
void hil_core_mqtt_failed(int rc, const char *reason);
void hil_core_mqtt_lost(const char *reason);
void hil_core_mqtt_message(const char *topic, const void *payload, size_t len, bool dup);
void hil_core_mqtt_published(int msg_id);
/* The answer to hil_port_sntp_query: ok with the server's time (already
 * corrected by half the round trip), or a kiss-o'-death code ("RATE",
 * "DENY", ...), or another error text. */
void hil_core_sntp_result(bool ok, int64_t unix_ms, const char *kiss_code, const char *error);

#ifdef __cplusplus
}
#endif
#endif
