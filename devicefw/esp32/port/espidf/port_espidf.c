/* ESP-IDF (v5.x) port of the hilrun C firmware. Thin: every rule lives in
 * the portable core; this file only maps hil_port.h onto ESP-IDF.
 *
 * Written against the documented ESP-IDF v5 API (esp_mqtt_client_config_t
 * with the v5 nested layout, uart_driver_install, nvs_get_blob, esp_wifi
 * STA) but NOT compiled here: the development machine has no ESP-IDF.
 *
 * Tasks: "hil_agent" reads the UART and ticks the core every 20 ms;
 * "hil_mqtt" runs every esp-mqtt lifecycle call (init, start, stop,
 * destroy) in order, like the POSIX port's worker; esp-mqtt's own task
 * delivers events; a short-lived "hil_sntp" task runs one SNTP query. All
 * of them call into the core under one mutex. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "driver/uart.h"
#include "esp_attr.h"
#include "esp_event.h"
#include "esp_mac.h"
#include "esp_netif.h"
#include "esp_random.h"
#include "esp_system.h"
#include "esp_timer.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/queue.h"
#include "freertos/semphr.h"
#include "freertos/task.h"
#include "hil_agent.h"
#include "hil_port.h"
#include "hil_sntp.h"
#include "lwip/netdb.h"
#include "lwip/sockets.h"
#include "mqtt_client.h"
#include "nvs.h"
#include "nvs_flash.h"
#include "port_espidf.h"

#define HIL_UART UART_NUM_0
#define HIL_UART_BAUD 115200

static SemaphoreHandle_t core_mu, uart_mu;
static nvs_handle_t nvs;
static int boots;
static RTC_NOINIT_ATTR uint32_t rtc_synced_magic; /* survives esp_restart, not power-off */
#define RTC_SYNCED 0x53594e43u

/* ---- identification, locks, time ---- */
const char *hil_port_board(void) { return CONFIG_IDF_TARGET; }
const char *hil_port_mqtt_lib(void) { return "esp-mqtt"; }
const char *hil_port_mqtt_lib_version(void) { return IDF_VER; }
int hil_port_boot_count(void) { return boots; }
void hil_port_core_lock(void) { xSemaphoreTake(core_mu, portMAX_DELAY); }
void hil_port_core_unlock(void) { xSemaphoreGive(core_mu); }
void hil_port_uart_lock(void) { xSemaphoreTake(uart_mu, portMAX_DELAY); }
void hil_port_uart_unlock(void) { xSemaphoreGive(uart_mu); }
uint64_t hil_port_uptime_ms(void) { return (uint64_t)(esp_timer_get_time() / 1000); }
uint32_t hil_port_random(void) { return esp_random(); }

int64_t hil_port_rtc_ms(bool *synced)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (synced) *synced = rtc_synced_magic == RTC_SYNCED;
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void hil_port_rtc_set(int64_t unix_ms, bool synced)
{
    struct timeval tv = {.tv_sec = (time_t)(unix_ms / 1000), .tv_usec = (suseconds_t)((unix_ms % 1000) * 1000)};
    settimeofday(&tv, NULL);
    rtc_synced_magic = synced ? RTC_SYNCED : 0;
}

/* ---- UART: the console UART, shared with ESP_LOG output ---- */
void hil_port_uart_write(const char *s, size_t n) { uart_write_bytes(HIL_UART, s, n); }

/* ---- NVS ---- */
int hil_port_nvs_get(const char *key, char *buf, size_t cap)
{
    size_t n = 0;
    if (nvs_get_blob(nvs, key, NULL, &n) != ESP_OK) return -1;
    if (buf && n < cap) {
        if (nvs_get_blob(nvs, key, buf, &n) != ESP_OK) return -1;
        buf[n] = 0;
    }
    return (int)n;
}

int hil_port_nvs_set(const char *key, const char *buf, size_t n)
{
    if (nvs_set_blob(nvs, key, buf, n) != ESP_OK) return -1;
    return nvs_commit(nvs) == ESP_OK ? 0 : -1;
}

void hil_port_nvs_erase(const char *key)
{
    nvs_erase_key(nvs, key);
    nvs_commit(nvs);
}

void hil_port_reboot(void)
{
    uart_wait_tx_done(HIL_UART, pdMS_TO_TICKS(200));
    esp_restart();
}

/* ---- Wi-Fi STA from the configuration's wifi section ---- */
static bool wifi_inited;

static void wifi_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)data;
    if (base == WIFI_EVENT && (id == WIFI_EVENT_STA_START || id == WIFI_EVENT_STA_DISCONNECTED)) esp_wifi_connect();
}

int hil_port_wifi_start(const char *ssid, const char *password)
{
    if (!ssid || !*ssid) return 0;
    if (!wifi_inited) {
        esp_netif_create_default_wifi_sta();
        wifi_init_config_t ic = WIFI_INIT_CONFIG_DEFAULT();
        if (esp_wifi_init(&ic) != ESP_OK) return -1;
        esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, wifi_event, NULL);
        esp_wifi_set_mode(WIFI_MODE_STA);
        wifi_inited = true;
    } else {
        esp_wifi_stop();
    }
    wifi_config_t wc = {0};
    strlcpy((char *)wc.sta.ssid, ssid, sizeof(wc.sta.ssid));
    strlcpy((char *)wc.sta.password, password ? password : "", sizeof(wc.sta.password));
    esp_wifi_set_config(WIFI_IF_STA, &wc);
    memset(&wc, 0, sizeof(wc));
    return esp_wifi_start() == ESP_OK ? 0 : -1;
}

/* No factory bundle on a board yet (ESP-IDF's esp_crt_bundle is not in PEM
 * form): trust.list lists the configured roots only. */
const char *hil_port_factory_trust_pem(void) { return NULL; }

/* ---- SNTP (RFC 4330): one query per call, in its own short-lived task ----
 *
 * The packets are the core's (hil_sntp.h); this is only the UDP socket
 * over lwIP's BSD API. esp_sntp (lwIP's SNTP app) is not used: it polls
 * its servers on its own schedule and only reports a successful sync
 * (sntp_set_time_sync_notification_cb), so it can neither report a
 * kiss-o'-death code (RATE, DENY) for one query nor answer "no reply
 * within N ms", and the core's retry policy (backoff, leaving a DENY
 * server alone, CLOCK-001) needs both. */
typedef struct {
    char host[200], port[16];
    int timeout_ms;
} sntp_req;

static void sntp_task(void *arg)
{
    sntp_req *q = arg;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_DGRAM;
    char err[120] = "", kiss[5] = "";
    bool ok = false;
    int64_t result = 0;
    int fd = -1;
    if (getaddrinfo(q->host, q->port, &hints, &res) != 0 || !res) snprintf(err, sizeof(err), "cannot resolve %.80s", q->host);
    else if ((fd = socket(res->ai_family, SOCK_DGRAM, IPPROTO_UDP)) < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0)
        snprintf(err, sizeof(err), "socket: errno %d", errno);
    if (res) freeaddrinfo(res);
    unsigned char pkt[HIL_SNTP_PACKET], buf[128];
    uint64_t sent = 0, start = 0;
    if (!err[0]) {
        sent = hil_sntp_request(pkt, hil_port_rtc_ms(NULL));
        start = hil_port_uptime_ms();
        if (send(fd, pkt, sizeof(pkt), 0) != (int)sizeof(pkt)) snprintf(err, sizeof(err), "send: errno %d", errno);
    }
    while (!err[0] && !ok && !kiss[0]) {
        int64_t left = (int64_t)q->timeout_ms - (int64_t)(hil_port_uptime_ms() - start);
        if (left <= 0) {
            snprintf(err, sizeof(err), "no answer within %d ms", q->timeout_ms);
            break;
        }
        struct timeval tv = {.tv_sec = (time_t)(left / 1000), .tv_usec = (suseconds_t)((left % 1000) * 1000)};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        int n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) continue; /* timeout (EAGAIN) or error: the deadline above ends it */
        int64_t elapsed = (int64_t)(hil_port_uptime_ms() - start);
        hil_sntp_status st = hil_sntp_parse(buf, (size_t)n, sent, elapsed, &result, kiss, err, sizeof(err));
        if (st == HIL_SNTP_OK) ok = true;
        else if (st != HIL_SNTP_IGNORE) break; /* kiss-o'-death or unusable answer */
    }
    if (fd >= 0) close(fd);
    free(q);
    hil_port_core_lock();
    hil_core_sntp_result(ok, result, kiss[0] ? kiss : NULL, err[0] ? err : NULL);
    hil_port_core_unlock();
    vTaskDelete(NULL);
}

bool hil_port_has_sntp(void) { return true; }

int hil_port_sntp_query(const char *server, int timeout_ms)
{
    sntp_req *q = calloc(1, sizeof(*q));
    if (!q) return -1;
    if (hil_sntp_split_server(server, q->host, sizeof(q->host), q->port, sizeof(q->port)) != 0) {
        free(q);
        return -1;
    }
    q->timeout_ms = timeout_ms;
    if (xTaskCreate(sntp_task, "hil_sntp", 4096, q, 5, NULL) != pdPASS) {
        free(q);
        return -1;
    }
    return 0;
}

/* ---- MQTT over esp-mqtt / esp-tls ---- */
typedef enum { JOB_CONNECT, JOB_DISCONNECT } job_kind;

typedef struct {
    job_kind kind;
    unsigned gen;
    bool graceful;
    char *host, *dial, *client_id, *username, *password, *trust, *cert, *key, *will_topic, *will_payload;
    int dial_port, keepalive;
    bool clean;
    char *filters[4];
    int qos[4];
    int nfilters;
} job;

static QueueHandle_t jobs;
static esp_mqtt_client_handle_t cli; /* guarded by core_mu for publishes */
static unsigned cur_gen;             /* guarded by core_mu */
static bool cur_active, cur_connected_once;
/* The SUBACK for the start-up filters came in the current MQTT session: a
 * session the hub reports present holds only what it acknowledged, so a
 * SUBSCRIBE whose connection died before the SUBACK is sent again
 * (RECON-008, RECON-010). subs_last_msg: msg_id of the last filter's
 * SUBSCRIBE (esp-mqtt sends one SUBSCRIBE per call, in order). */
static bool subs_acked;
static int subs_last_msg = -1;
static job *cur_job;                 /* filters of the live session */
static char *rx_buf;                 /* reassembly of a fragmented PUBLISH */
static size_t rx_len, rx_total;
static char rx_topic[256];

static char *dup_str(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void job_free(job *j)
{
    if (!j) return;
    if (j->password) memset(j->password, 0, strlen(j->password));
    if (j->key) memset(j->key, 0, strlen(j->key));
    free(j->host), free(j->dial), free(j->client_id), free(j->username), free(j->password);
    free(j->trust), free(j->cert), free(j->key), free(j->will_topic), free(j->will_payload);
    for (int i = 0; i < j->nfilters; i++) free(j->filters[i]);
    free(j);
}

static void mqtt_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)base;
    unsigned gen = (unsigned)(uintptr_t)arg;
    esp_mqtt_event_handle_t ev = data;
    if (id == MQTT_EVENT_BEFORE_CONNECT) return;
    if (id == MQTT_EVENT_CONNECTED && !ev->session_present) subs_acked = false;
    if (id == MQTT_EVENT_CONNECTED && cur_job && !subs_acked) {
        /* Subscriptions before the core sees the CONNACK (TWIN-001). */
        for (int i = 0; i < cur_job->nfilters; i++)
            subs_last_msg = esp_mqtt_client_subscribe(ev->client, cur_job->filters[i], cur_job->qos[i]);
    }
    if (id == MQTT_EVENT_SUBSCRIBED && ev->msg_id == subs_last_msg) subs_acked = true;
    hil_port_core_lock();
    if (gen != cur_gen) {
        hil_port_core_unlock();
        return;
    }
    switch (id) {
    case MQTT_EVENT_CONNECTED:
        cur_active = cur_connected_once = true;
        hil_core_mqtt_connected(ev->session_present != 0);
        break;
    case MQTT_EVENT_DISCONNECTED:
        if (cur_active) {
            cur_active = false;
            hil_core_mqtt_lost("connection lost");
        } else if (!cur_connected_once) {
            hil_core_mqtt_failed(0, "connect failed");
        }
        cur_gen++; /* nothing more from this session */
        break;
    case MQTT_EVENT_ERROR: {
        esp_mqtt_error_codes_t *e = ev->error_handle;
        if (!cur_active && e && e->error_type == MQTT_ERROR_TYPE_CONNECTION_REFUSED) {
            hil_core_mqtt_failed((int)e->connect_return_code, "refused");
            cur_gen++;
        } else if (!cur_active && e && e->error_type == MQTT_ERROR_TYPE_TCP_TRANSPORT && e->esp_tls_cert_verify_flags != 0) {
            hil_core_mqtt_failed(-1, "TLS: server certificate verification failed");
            cur_gen++;
        }
        break;
    }
    case MQTT_EVENT_PUBLISHED:
        hil_core_mqtt_published(ev->msg_id);
        break;
    case MQTT_EVENT_DATA:
        if (ev->current_data_offset == 0) {
            free(rx_buf);
            rx_buf = NULL;
            rx_len = 0;
            rx_total = (size_t)ev->total_data_len;
            snprintf(rx_topic, sizeof(rx_topic), "%.*s", ev->topic_len, ev->topic);
            if (ev->data_len < ev->total_data_len) rx_buf = malloc(rx_total ? rx_total : 1);
        }
        if (ev->data_len >= ev->total_data_len) {
            hil_core_mqtt_message(rx_topic, ev->data, (size_t)ev->data_len, ev->dup);
        } else if (rx_buf) {
            memcpy(rx_buf + ev->current_data_offset, ev->data, (size_t)ev->data_len);
            rx_len += (size_t)ev->data_len;
            if (rx_len >= rx_total) {
                hil_core_mqtt_message(rx_topic, rx_buf, rx_total, ev->dup);
                free(rx_buf);
                rx_buf = NULL;
            }
        }
        break;
    default:
        break;
    }
    hil_port_core_unlock();
}

static void stop_client(bool graceful)
{
    if (!cli) return;
    if (graceful) esp_mqtt_client_disconnect(cli);
    esp_mqtt_client_stop(cli);
    esp_mqtt_client_destroy(cli);
    cli = NULL;
    job_free(cur_job);
    cur_job = NULL;
}

static void mqtt_task(void *arg)
{
    (void)arg;
    job *j;
    for (;;) {
        if (xQueueReceive(jobs, &j, portMAX_DELAY) != pdTRUE) continue;
        if (j->kind == JOB_DISCONNECT) {
            stop_client(j->graceful);
            job_free(j);
            continue;
        }
        stop_client(false);
        esp_mqtt_client_config_t c = {0};
        c.broker.address.hostname = j->dial;
        c.broker.address.port = (uint32_t)j->dial_port;
        c.broker.address.transport = MQTT_TRANSPORT_OVER_SSL;
        c.broker.verification.certificate = j->trust;
        c.broker.verification.certificate_len = j->trust ? strlen(j->trust) + 1 : 0;
        /* SNI and the certificate name check use the hub host, whatever
         * address is dialled (esp-tls: common_name). */
        c.broker.verification.common_name = j->host;
        c.credentials.client_id = j->client_id;
        c.credentials.username = j->username;
        c.credentials.authentication.password = j->password;
        c.credentials.authentication.certificate = j->cert;
        c.credentials.authentication.certificate_len = j->cert ? strlen(j->cert) + 1 : 0;
        c.credentials.authentication.key = j->key;
        c.credentials.authentication.key_len = j->key ? strlen(j->key) + 1 : 0;
        c.session.keepalive = j->keepalive;
        c.session.disable_clean_session = !j->clean;
        c.session.protocol_ver = MQTT_PROTOCOL_V_3_1_1;
        if (j->will_topic) { /* CONN-021: esp_mqtt_client_stop closes without DISCONNECT */
            c.session.last_will.topic = j->will_topic;
            c.session.last_will.msg = j->will_payload;
            c.session.last_will.msg_len = (int)strlen(j->will_payload);
            c.session.last_will.qos = 1;
            c.session.last_will.retain = 0;
        }
        c.network.disable_auto_reconnect = true; /* the core's backoff decides */
        c.network.timeout_ms = 10000;
        c.buffer.size = 4096;
        cli = esp_mqtt_client_init(&c);
        subs_acked = false; /* a new client: its ClientId's session is the hub's to report */
        cur_job = j;
        hil_port_core_lock();
        bool stale = j->gen != cur_gen;
        hil_port_core_unlock();
        if (!cli || stale) {
            if (!stale) {
                hil_port_core_lock();
                hil_core_mqtt_failed(0, "esp_mqtt_client_init failed");
                hil_port_core_unlock();
            }
            stop_client(false);
            continue;
        }
        esp_mqtt_client_register_event(cli, (esp_mqtt_event_id_t)ESP_EVENT_ANY_ID, mqtt_event, (void *)(uintptr_t)j->gen);
        if (esp_mqtt_client_start(cli) != ESP_OK) {
            hil_port_core_lock();
            hil_core_mqtt_failed(0, "esp_mqtt_client_start failed");
            hil_port_core_unlock();
            stop_client(false);
        }
    }
}

int hil_port_mqtt_connect(const hil_mqtt_params *p)
{
    job *j = calloc(1, sizeof(*j));
    if (!j) return -1;
    j->kind = JOB_CONNECT;
    j->host = dup_str(p->host);
    j->dial = dup_str(p->dial_host);
    j->dial_port = p->dial_port;
    j->client_id = dup_str(p->client_id);
    j->username = dup_str(p->username);
    j->password = dup_str(p->password);
    j->trust = dup_str(p->trust_pem);
    j->cert = dup_str(p->cert_pem);
    j->key = dup_str(p->key_pem);
    j->keepalive = p->keepalive_s;
    j->clean = p->clean_session;
    if (p->will_topic) {
        j->will_topic = dup_str(p->will_topic);
        j->will_payload = dup_str(p->will_payload ? p->will_payload : "");
    }
    for (int i = 0; i < p->nfilters && i < 4; i++) {
        j->filters[i] = dup_str(p->filters[i]);
        j->qos[i] = p->filter_qos[i];
        j->nfilters = i + 1;
    }
    cur_gen++;
    cur_active = cur_connected_once = false;
    j->gen = cur_gen;
    if (xQueueSend(jobs, &j, 0) != pdTRUE) {
        job_free(j);
        return -1;
    }
    return 0;
}

int hil_port_mqtt_publish(const char *topic, const void *payload, size_t len, int qos, int *msg_id)
{
    if (!cli || !cur_active) return -1;
    int id = esp_mqtt_client_publish(cli, topic, payload, (int)len, qos, 0);
    if (id < 0) return -1;
    if (msg_id) *msg_id = id;
    return 0;
}

void hil_port_mqtt_disconnect(bool graceful)
{
    cur_gen++;
    cur_active = false;
    job *j = calloc(1, sizeof(*j));
    if (!j) return;
    j->kind = JOB_DISCONNECT;
    j->graceful = graceful;
    if (xQueueSend(jobs, &j, 0) != pdTRUE) free(j);
}

/* ---- the agent task ---- */
static void agent_task(void *arg)
{
    (void)arg;
    static char buf[256];
    hil_port_core_lock();
    hil_core_boot();
    hil_port_core_unlock();
    for (;;) {
        hil_port_core_lock();
        TickType_t wait = pdMS_TO_TICKS(hil_core_tick_due_ms(20));
        hil_port_core_unlock();
        int n = uart_read_bytes(HIL_UART, buf, sizeof(buf), wait);
        hil_port_core_lock();
        if (n > 0) hil_core_uart_input(buf, (size_t)n);
        hil_core_tick();
        hil_port_core_unlock();
    }
}

void hil_espidf_start(void)
{
    core_mu = xSemaphoreCreateMutex();
    uart_mu = xSemaphoreCreateMutex();
    esp_err_t err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        nvs_flash_erase();
        nvs_flash_init();
    }
    nvs_open("hilrun", NVS_READWRITE, &nvs);
    int32_t b = 0;
    nvs_get_i32(nvs, "boots", &b);
    boots = (int)b + 1;
    nvs_set_i32(nvs, "boots", boots);
    nvs_commit(nvs);
    if (esp_reset_reason() == ESP_RST_POWERON) rtc_synced_magic = 0;
    uart_config_t uc = {
        .baud_rate = HIL_UART_BAUD,
        .data_bits = UART_DATA_8_BITS,
        .parity = UART_PARITY_DISABLE,
        .stop_bits = UART_STOP_BITS_1,
        .flow_ctrl = UART_HW_FLOWCTRL_DISABLE,
        .source_clk = UART_SCLK_DEFAULT,
    };
    uart_driver_install(HIL_UART, 2 * HIL_MAX_FRAME, 2048, 0, NULL, 0);
    uart_param_config(HIL_UART, &uc);
    esp_netif_init();
    esp_event_loop_create_default();
    jobs = xQueueCreate(8, sizeof(job *));
    xTaskCreate(mqtt_task, "hil_mqtt", 6144, NULL, 5, NULL);
    xTaskCreate(agent_task, "hil_agent", 8192, NULL, 5, NULL);
}
