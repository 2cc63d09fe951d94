/* POSIX port of the hilrun C firmware: the virtual board's pty as UART,
 * files in --state as NVS and RTC, Paho MQTT C (synchronous client,
 * paho-mqtt3cs, over OpenSSL) as the MQTT session.
 *
 * The dial address differs from the hub host on the rig (the fault proxy
 * on 127.0.0.1:port). Paho C takes the TLS SNI and the certificate name it
 * checks from the URI host, so the URI names the hub host and the dial
 * port, and a resolver shim (getaddrinfo below, which the executable
 * exports ahead of libc) answers the hub host with the dial address: SNI,
 * certificate check, Username and sr all keep the hub host. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "MQTTClient.h"
#include "hil_port.h"
#include "hil_sntp.h"
#include "port_posix.h"

static char state_dir[512];
static const char *board_name = "sim";
static int uart = -1;
static int boots;
static pthread_mutex_t core_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t uart_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t rtc_mu = PTHREAD_MUTEX_INITIALIZER;
static struct timespec boot_ts;
static int64_t rtc_offset_ms; /* RTC = offset + uptime */
static bool rtc_synced;
static volatile bool reset_requested;

static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)(t.tv_sec - boot_ts.tv_sec) * 1000 + (t.tv_nsec - boot_ts.tv_nsec) / 1000000;
}

static int64_t host_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", state_dir, name); }

/* Replace a file atomically, mode 0600 (NVS holds secrets). */
static int write_file(const char *path, const char *buf, size_t n)
{
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, buf + off, n - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    close(fd);
    return rename(tmp, path);
}

static long read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    long n = (long)st.st_size;
    if (buf && (size_t)n < cap) {
        long off = 0;
        while (off < n) {
            ssize_t r = read(fd, buf + off, (size_t)(n - off));
            if (r <= 0) break;
            off += r;
        }
        n = off;
        buf[n] = 0;
    }
    close(fd);
    return n;
}

int posix_port_init(const char *dir, const char *board, int uart_fd)
{
    clock_gettime(CLOCK_MONOTONIC, &boot_ts);
    snprintf(state_dir, sizeof(state_dir), "%s", dir);
    mkdir(state_dir, 0700);
    char p[600], buf[256];
    path_of(p, sizeof(p), "nvs-c");
    mkdir(p, 0700);
    board_name = board;
    uart = uart_fd;
    path_of(p, sizeof(p), "bootcount");
    boots = read_file(p, buf, sizeof(buf)) > 0 ? atoi(buf) : 0;
    boots++;
    int n = snprintf(buf, sizeof(buf), "%d\n", boots);
    write_file(p, buf, (size_t)n);
    /* The RTC survives a soft reset (and keeps running), not a power cycle
     * (the board deletes rtc.json). Same file as the Go firmware's. */
    path_of(p, sizeof(p), "rtc.json");
    if (read_file(p, buf, sizeof(buf)) > 0) {
        long long unix_ms = 0, saved = 0;
        const char *u = strstr(buf, "\"unixMs\":"), *h = strstr(buf, "\"hostMs\":");
        if (u) unix_ms = atoll(u + 9);
        if (h) saved = atoll(h + 9);
        long long elapsed = host_ms() - saved;
        if (elapsed < 0) elapsed = 0;
        rtc_offset_ms = unix_ms + elapsed;
        rtc_synced = strstr(buf, "\"synced\":true") != NULL;
    }
    return 0;
}

void posix_port_save_rtc(void)
{
    char p[600], buf[160];
    bool synced;
    int64_t now = hil_port_rtc_ms(&synced);
    int n = snprintf(buf, sizeof(buf), "{\"unixMs\":%lld,\"synced\":%s,\"hostMs\":%lld}", (long long)now, synced ? "true" : "false", (long long)host_ms());
    path_of(p, sizeof(p), "rtc.json");
    write_file(p, buf, (size_t)n);
}

bool posix_port_reset_requested(void) { return reset_requested; }

/* ---- identification, locks, time ---- */
const char *hil_port_board(void) { return board_name; }
const char *hil_port_mqtt_lib(void) { return "paho-c"; }
const char *hil_port_mqtt_lib_version(void)
{
    static char v[32];
    if (!v[0]) {
        MQTTClient_nameValue *nv = MQTTClient_getVersionInfo();
        snprintf(v, sizeof(v), "unknown");
        for (; nv && nv->name; nv++)
            if (strcmp(nv->name, "Version") == 0) snprintf(v, sizeof(v), "%s", nv->value);
    }
    return v;
}
int hil_port_boot_count(void) { return boots; }
void hil_port_core_lock(void) { pthread_mutex_lock(&core_mu); }
void hil_port_core_unlock(void) { pthread_mutex_unlock(&core_mu); }
void hil_port_uart_lock(void) { pthread_mutex_lock(&uart_mu); }
void hil_port_uart_unlock(void) { pthread_mutex_unlock(&uart_mu); }
uint64_t hil_port_uptime_ms(void) { return (uint64_t)mono_ms(); }

int64_t hil_port_rtc_ms(bool *synced)
{
    pthread_mutex_lock(&rtc_mu);
    int64_t v = rtc_offset_ms + mono_ms();
    if (synced) *synced = rtc_synced;
    pthread_mutex_unlock(&rtc_mu);
    return v;
}

void hil_port_rtc_set(int64_t unix_ms, bool synced)
{
    pthread_mutex_lock(&rtc_mu);
    rtc_offset_ms = unix_ms - mono_ms();
    rtc_synced = synced;
    pthread_mutex_unlock(&rtc_mu);
    posix_port_save_rtc();
}

uint32_t hil_port_random(void)
{
    uint32_t r;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r)) r = (uint32_t)rand();
    return r;
}

void hil_port_uart_write(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(uart, s, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                usleep(1000);
                continue;
            }
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

/* ---- NVS: one file per key in <state>/nvs-c ---- */
static bool key_ok(const char *key)
{
    for (const char *p = key; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) return false;
    return *key != 0;
}

int hil_port_nvs_get(const char *key, char *buf, size_t cap)
{
    if (!key_ok(key)) return -1;
    char p[600], name[64];
    snprintf(name, sizeof(name), "nvs-c/%s", key);
    path_of(p, sizeof(p), name);
    long n = read_file(p, buf, cap);
    return n < 0 ? -1 : (int)n;
}

int hil_port_nvs_set(const char *key, const char *buf, size_t n)
{
    if (!key_ok(key)) return -1;
    char p[600], name[64];
    snprintf(name, sizeof(name), "nvs-c/%s", key);
    path_of(p, sizeof(p), name);
    return write_file(p, buf, n) == 0 ? 0 : -1;
}

void hil_port_nvs_erase(const char *key)
{
    if (!key_ok(key)) return;
    char p[600], name[64];
    snprintf(name, sizeof(name), "nvs-c/%s", key);
    path_of(p, sizeof(p), name);
    unlink(p);
}

void hil_port_reboot(void) { reset_requested = true; }
int hil_port_wifi_start(const char *ssid, const char *password)
{
    (void)ssid;
    (void)password;
    return 0; /* the host is on the network already */
}
/* ---- SNTP (RFC 4330), one query per call, on its own thread; the
 * packets are the core's (hil_sntp.h), the socket is the port's ---- */
typedef struct {
    char host[200], port[16];
    int timeout_ms;
} sntp_req;

static void sntp_done(bool ok, int64_t ms, const char *kiss, const char *err);

static void *sntp_thread(void *arg)
{
    sntp_req *q = arg;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_DGRAM;
    char err[120] = "";
    int fd = -1;
    if (getaddrinfo(q->host, q->port, &hints, &res) != 0 || !res) snprintf(err, sizeof(err), "cannot resolve %.80s", q->host);
    else if ((fd = socket(res->ai_family, SOCK_DGRAM, 0)) < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0)
        snprintf(err, sizeof(err), "%s", strerror(errno));
    if (res) freeaddrinfo(res);
    if (err[0]) {
        if (fd >= 0) close(fd);
        sntp_done(false, 0, NULL, err);
        free(q);
        return NULL;
    }
    unsigned char pkt[HIL_SNTP_PACKET], buf[512];
    uint64_t sent = hil_sntp_request(pkt, hil_port_rtc_ms(NULL));
    uint64_t start = hil_port_uptime_ms();
    bool ok = false;
    int64_t result = 0;
    char kiss[5] = "";
    if (send(fd, pkt, sizeof(pkt), 0) != (ssize_t)sizeof(pkt)) snprintf(err, sizeof(err), "send: %s", strerror(errno));
    while (!err[0] && !ok && !kiss[0]) {
        int64_t left = (int64_t)q->timeout_ms - (int64_t)(hil_port_uptime_ms() - start);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
            snprintf(err, sizeof(err), "no answer within %d ms", q->timeout_ms);
            break;
        }
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) continue;
        int64_t elapsed = (int64_t)(hil_port_uptime_ms() - start);
        hil_sntp_status st = hil_sntp_parse(buf, (size_t)n, sent, elapsed, &result, kiss, err, sizeof(err));
        if (st == HIL_SNTP_OK) ok = true;
        else if (st != HIL_SNTP_IGNORE) break; /* kiss-o'-death or unusable answer */
    }
    close(fd);
    sntp_done(ok, result, kiss[0] ? kiss : NULL, err);
    free(q);
    return NULL;
}

bool hil_port_has_sntp(void) { return true; }

/* factory_bundle.c is generated by host/CMakeLists.txt from
 * certs/public (DigiCert Global Root G2, Baltimore CyberTrust Root). */
extern const char hil_factory_bundle_pem[];
const char *hil_port_factory_trust_pem(void) { return hil_factory_bundle_pem; }

int hil_port_sntp_query(const char *server, int timeout_ms)
{
    sntp_req *q = calloc(1, sizeof(*q));
    if (!q) return -1;
    if (hil_sntp_split_server(server, q->host, sizeof(q->host), q->port, sizeof(q->port)) != 0) {
        free(q);
        return -1;
    }
    q->timeout_ms = timeout_ms;
    pthread_t t;
    if (pthread_create(&t, NULL, sntp_thread, q) != 0) {
        free(q);
        return -1;
    }
    pthread_detach(t);
    return 0;
}

/* ---- resolver shim ---- */
static pthread_mutex_t resolve_mu = PTHREAD_MUTEX_INITIALIZER;
static char resolve_host[256], resolve_to[256];

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
    if (!real) real = (int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))dlsym(RTLD_NEXT, "getaddrinfo");
    char to[256] = {0};
    if (node) {
        pthread_mutex_lock(&resolve_mu);
        if (resolve_host[0] && strcasecmp(node, resolve_host) == 0) {
            snprintf(to, sizeof(to), "%s", resolve_to);
        }
        pthread_mutex_unlock(&resolve_mu);
    }
    return real(to[0] ? to : node, service, hints, res);
}

/* ---- TLS shim ----
 * Paho C checks the server's host name only after the handshake has
 * completed, and offers TLS 1.0 and 1.1 whatever sslVersion says. A
 * firmware must abandon a handshake with a certificate for another host
 * (CONN-003) and offer TLS 1.2 or later only (CONN-004), so SSL_connect,
 * which libpaho calls for every handshake step, is wrapped: before the
 * first step the expected host goes into the verify parameters (checked
 * inside the handshake by OpenSSL, which then aborts it) and the minimum
 * version is set to TLS 1.2. */
static pthread_mutex_t ssl_mu = PTHREAD_MUTEX_INITIALIZER;
static char ssl_host[256];

int SSL_connect(SSL *ssl)
{
    static int (*real)(SSL *);
    if (!real) real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    if (SSL_get_state(ssl) == TLS_ST_BEFORE) {
        if (SSL_get_min_proto_version(ssl) < TLS1_2_VERSION) SSL_set_min_proto_version(ssl, TLS1_2_VERSION);
        pthread_mutex_lock(&ssl_mu);
        if (ssl_host[0]) SSL_set1_host(ssl, ssl_host);
        pthread_mutex_unlock(&ssl_mu);
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    return real(ssl);
}

/* Every byte Paho reads from the hub passes SSL_read: its time is the
 * keep-alive watchdog's evidence that the link is alive (see worker). */
static uint64_t last_rx_ms;

int SSL_read(SSL *ssl, void *buf, int num)
{
    static int (*real)(SSL *, void *, int);
    if (!real) real = (int (*)(SSL *, void *, int))dlsym(RTLD_NEXT, "SSL_read");
    int n = real(ssl, buf, num);
    if (n > 0) __atomic_store_n(&last_rx_ms, hil_port_uptime_ms(), __ATOMIC_RELAXED);
    return n;
}

/* Paho C sends DISCONNECT whenever it cleans up a connection, also one the
 * hub has just dropped or that the firmware abandons on purpose (reset,
 * client.close without grace). A DISCONNECT tells the hub to discard the
 * Will (CONN-021) and marks the loss as clean, so the 2-byte DISCONNECT
 * packet reaches the wire only while the worker performs a graceful
 * disconnect. */
static volatile bool graceful_disconnect;

int SSL_write(SSL *ssl, const void *buf, int num)
{
    static int (*real)(SSL *, const void *, int);
    if (!real) real = (int (*)(SSL *, const void *, int))dlsym(RTLD_NEXT, "SSL_write");
    const unsigned char *b = buf;
    if (num == 2 && b[0] == 0xE0 && b[1] == 0x00 && !__atomic_load_n(&graceful_disconnect, __ATOMIC_RELAXED)) return num;
    return real(ssl, buf, num);
}

/* ---- MQTT over Paho C ----
 * Creating, connecting and destroying Paho clients from several threads at
 * once crashed libpaho (seen under ASan), so every Paho call but publish
 * runs on one MQTT worker thread, in order, on one handle kept while the
 * URI and client id stay the same. Paho is used in its synchronous mode (no
 * callbacks): the worker cycles the connection with MQTTClient_receive
 * (inbound PUBLISHes, PUBACKs, keep-alive) and detects completed QoS 1
 * deliveries with MQTTClient_getPendingDeliveryTokens. With callbacks Paho
 * runs its own background thread and, after every lost connection, its
 * connect sleeps 100 ms waiting for that thread to start again, which
 * stretched the first reconnect delay (RECON-001). Publishes come from the
 * core, under the core lock (Paho locks its API calls). A generation number
 * tells events of an old connection from the current one. */
typedef enum { JOB_CONNECT, JOB_DISCONNECT } job_kind;

typedef struct job {
    struct job *next;
    job_kind kind;
    unsigned gen;
    bool graceful;
    char uri[320], client_id[260], username[512], password[768], host[256];
    char trust[600], cert[600], key[600];
    int keepalive;
    bool clean;
    bool has_will;
    char will_topic[1024];
    char *will_payload;
    char filters[4][200];
    char *filter_ptrs[4];
    int filter_qos[4];
    int nfilters;
} job;

static pthread_mutex_t job_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t job_cv = PTHREAD_COND_INITIALIZER;
static job *jobs_head, *jobs_tail;
static bool worker_started;

static MQTTClient cli; /* used by the worker; publishes by the core */
static bool cli_created;
static char cli_uri[320], cli_id[260];
static unsigned cur_gen;     /* the core's current session; guarded by core_mu */
static bool cur_active;      /* that session is connected; guarded by core_mu */
static unsigned conn_gen;    /* generation the handle is connected for (worker; read under core_mu) */
static bool tls_verify_failed;
/* The SUBACK for the start-up filters came on a connection of the current
 * MQTT session (worker only). A session the hub reports present holds only
 * what it acknowledged: a SUBSCRIBE whose connection died before the SUBACK
 * is sent again (RECON-008, RECON-010). */
static bool subs_acked;

static int ssl_error(const char *str, size_t len, void *u)
{
    (void)u;
    if (memmem(str, len, "certificate verify failed", 25) || memmem(str, len, "verify", 6)) tls_verify_failed = true;
    return 0;
}

/* What the worker sees on the connection (lost, message, PUBACK) is queued
 * with the generation of its connection, and the main loop hands it to the
 * core (posix_port_drain): the worker never waits for the core lock while it
 * is inside Paho, and the core publishes (inside Paho) with the core lock
 * held. (With Paho's callbacks, called with Paho's mutex held, waiting for
 * the core lock there deadlocked against a publish.) */
typedef enum { EV_LOST, EV_MESSAGE, EV_DELIVERED, EV_SNTP } ev_kind;
typedef struct ev {
    struct ev *next;
    ev_kind kind;
    unsigned gen;
    int token;
    bool dup;
    char *topic;
    char *payload;
    size_t len;
} ev;

static pthread_mutex_t ev_mu = PTHREAD_MUTEX_INITIALIZER;
static ev *ev_head, *ev_tail;
static int wake_pipe[2] = {-1, -1};

static void ev_push(ev *e)
{
    pthread_mutex_lock(&ev_mu);
    e->gen = conn_gen;
    if (ev_tail) ev_tail->next = e;
    else ev_head = e;
    ev_tail = e;
    pthread_mutex_unlock(&ev_mu);
    if (wake_pipe[1] >= 0) {
        char c = 1;
        ssize_t r = write(wake_pipe[1], &c, 1);
        (void)r;
    }
}

int posix_port_wake_fd(void)
{
    if (wake_pipe[0] < 0 && pipe(wake_pipe) == 0) {
        fcntl(wake_pipe[0], F_SETFL, O_NONBLOCK);
        fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK);
    }
    return wake_pipe[0];
}

/* Called by the main loop with the core lock held. */
void posix_port_drain(void)
{
    char buf[64];
    while (read(wake_pipe[0], buf, sizeof(buf)) > 0) {
    }
    for (;;) {
        pthread_mutex_lock(&ev_mu);
        ev *e = ev_head;
        if (e) {
            ev_head = e->next;
            if (!ev_head) ev_tail = NULL;
        }
        pthread_mutex_unlock(&ev_mu);
        if (!e) return;
        if (e->kind == EV_SNTP) {
            hil_core_sntp_result(e->dup, (int64_t)e->len, e->topic, e->payload);
        } else if (e->gen == cur_gen) {
            switch (e->kind) {
            case EV_LOST:
                if (cur_active) {
                    cur_active = false;
                    hil_core_mqtt_lost(e->topic ? e->topic : "connection lost");
                }
                break;
            case EV_MESSAGE:
                hil_core_mqtt_message(e->topic, e->payload, e->len, e->dup);
                break;
            case EV_DELIVERED:
                if (cur_active) hil_core_mqtt_published(e->token);
                break;
            case EV_SNTP:
                break;
            }
        }
        free(e->topic);
        free(e->payload);
        free(e);
    }
}

static void sntp_done(bool ok, int64_t ms, const char *kiss, const char *err)
{
    ev *e = calloc(1, sizeof(*e));
    if (!e) return;
    e->kind = EV_SNTP;
    e->dup = ok;
    e->len = (size_t)ms;
    if (kiss) e->topic = strdup(kiss);
    if (err && *err) e->payload = strdup(err);
    ev_push(e);
}

static void on_lost(void *ctx, char *cause)
{
    (void)ctx;
    ev *e = calloc(1, sizeof(*e));
    if (!e) return;
    e->kind = EV_LOST;
    if (cause) e->topic = strdup(cause);
    ev_push(e);
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTClient_message *m)
{
    (void)ctx;
    ev *e = calloc(1, sizeof(*e));
    size_t tl = topic_len > 0 ? (size_t)topic_len : strlen(topic);
    if (e) {
        e->kind = EV_MESSAGE;
        e->topic = malloc(tl + 1);
        e->payload = malloc((size_t)m->payloadlen + 1);
        e->len = (size_t)m->payloadlen;
        e->dup = m->dup != 0;
        if (e->topic && e->payload) {
            memcpy(e->topic, topic, tl);
            e->topic[tl] = 0;
            memcpy(e->payload, m->payload, e->len);
            ev_push(e);
        } else {
            free(e->topic);
            free(e->payload);
            free(e);
        }
    }
    MQTTClient_freeMessage(&m);
    MQTTClient_free(topic);
    return 1; /* handled: Paho sends the PUBACK for QoS 1 (C2D-003) */
}

static void on_delivered(void *ctx, MQTTClient_deliveryToken dt)
{
    (void)ctx;
    ev *e = calloc(1, sizeof(*e));
    if (!e) return;
    e->kind = EV_DELIVERED;
    e->token = (int)dt;
    ev_push(e);
}

static void job_free(job *j)
{
    free(j->will_payload);
    if (j->kind == JOB_CONNECT) {
        unlink(j->trust);
        unlink(j->cert);
        unlink(j->key);
    }
    memset(j, 0, sizeof(*j));
    free(j);
}

static void do_connect(job *j)
{
    int rc = MQTTCLIENT_SUCCESS;
    if (cli_created && (strcmp(cli_uri, j->uri) || strcmp(cli_id, j->client_id))) {
        if (MQTTClient_isConnected(cli)) MQTTClient_disconnect(cli, 0);
        MQTTClient_destroy(&cli);
        cli_created = false;
        subs_acked = false; /* another ClientId: another session */
    }
    if (!cli_created) {
        rc = MQTTClient_create(&cli, j->uri, j->client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
        if (rc == MQTTCLIENT_SUCCESS) {
            cli_created = true;
            snprintf(cli_uri, sizeof(cli_uri), "%s", j->uri);
            snprintf(cli_id, sizeof(cli_id), "%s", j->client_id);
            /* No callbacks: Paho's synchronous mode. The worker cycles the
             * client itself (MQTTClient_receive), so Paho starts no
             * background thread, and its connect does not sleep 100 ms
             * waiting for one after every lost connection. */
        }
    }
    if (cli_created && MQTTClient_isConnected(cli)) MQTTClient_disconnect(cli, 0);
    MQTTClient_connectOptions co = MQTTClient_connectOptions_initializer;
    MQTTClient_SSLOptions so = MQTTClient_SSLOptions_initializer;
    so.trustStore = j->trust[0] ? j->trust : NULL;
    so.keyStore = j->cert[0] ? j->cert : NULL;
    so.privateKey = j->key[0] ? j->key : NULL;
    so.enableServerCertAuth = 1;
    so.verify = 1;
    so.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
    so.disableDefaultTrustStore = 1; /* only the roots of trust.add + the factory bundle */
    so.ssl_error_cb = ssl_error;
    co.ssl = &so;
    co.keepAliveInterval = j->keepalive;
    co.cleansession = j->clean;
    co.username = j->username;
    co.password = j->password[0] ? j->password : NULL;
    co.connectTimeout = 10;
    co.MQTTVersion = MQTTVERSION_3_1_1;
    MQTTClient_willOptions wo = MQTTClient_willOptions_initializer;
    if (j->has_will) {
        wo.topicName = j->will_topic;
        wo.message = NULL;
        wo.payload.data = j->will_payload;
        wo.payload.len = (int)strlen(j->will_payload);
        wo.qos = 1;
        wo.retained = 0;
        co.will = &wo;
    }
    co.reliable = 0;
    tls_verify_failed = false;
    pthread_mutex_lock(&ssl_mu);
    snprintf(ssl_host, sizeof(ssl_host), "%s", j->host);
    pthread_mutex_unlock(&ssl_mu);
    hil_port_core_lock();
    bool stale = j->gen != cur_gen;
    conn_gen = j->gen;
    hil_port_core_unlock();
    if (stale) return;
    if (rc == MQTTCLIENT_SUCCESS) rc = MQTTClient_connect(cli, &co);
    memset(j->password, 0, sizeof(j->password));
    unlink(j->key); /* the key file lives only for the handshake */
    /* Subscriptions right after the CONNACK, before the core publishes
     * anything; outside the core lock, as the SUBACK wait may be long. */
    bool lost_before_suback = false;
    if (rc == MQTTCLIENT_SUCCESS && !co.returned.sessionPresent) subs_acked = false;
    if (rc == MQTTCLIENT_SUCCESS && !subs_acked && j->nfilters > 0) {
        int src = MQTTClient_subscribeMany(cli, j->nfilters, j->filter_ptrs, j->filter_qos);
        if (src == MQTTCLIENT_SUCCESS && MQTTClient_isConnected(cli)) {
            subs_acked = true;
        } else {
            /* The connection ended before its SUBACK (Paho's synchronous
             * call returns the error; no connectionLost follows): this
             * attempt failed, the core backs off and connects again. */
            fprintf(stderr, "hilfw: subscribe failed (%d)\n", src);
            lost_before_suback = true;
        }
    }
    if (lost_before_suback) {
        if (MQTTClient_isConnected(cli)) MQTTClient_disconnect(cli, 0);
        hil_port_core_lock();
        if (j->gen == cur_gen) hil_core_mqtt_failed(0, "connection lost before the SUBACK");
        hil_port_core_unlock();
        return;
    }
    hil_port_core_lock();
    if (j->gen != cur_gen) {
        hil_port_core_unlock();
        if (rc == MQTTCLIENT_SUCCESS) MQTTClient_disconnect(cli, 250);
        return;
    }
    if (rc == MQTTCLIENT_SUCCESS) {
        cur_active = true;
        hil_core_mqtt_connected(co.returned.sessionPresent != 0);
        hil_port_core_unlock();
        return;
    }
    char why[160];
    int code = 0;
    if (rc >= 1 && rc <= 5) {
        code = rc;
        static const char *const names[] = {"", "unacceptable protocol version", "identifier rejected", "server unavailable", "bad user name or password", "not authorized"};
        snprintf(why, sizeof(why), "%s", names[rc]);
    } else if (tls_verify_failed) {
        code = -1;
        snprintf(why, sizeof(why), "TLS: server certificate verification failed");
    } else {
        snprintf(why, sizeof(why), "connect failed (paho rc %d)", rc);
    }
    hil_core_mqtt_failed(code, why);
    hil_port_core_unlock();
}

/* QoS 1 tokens published and not yet seen complete. */
static pthread_mutex_t tok_mu = PTHREAD_MUTEX_INITIALIZER;
static int toks[256];
static int ntoks;

static void check_deliveries(void)
{
    MQTTClient_deliveryToken *pend = NULL;
    if (MQTTClient_getPendingDeliveryTokens(cli, &pend) != MQTTCLIENT_SUCCESS) return;
    pthread_mutex_lock(&tok_mu);
    for (int i = 0; i < ntoks;) {
        bool pending = false;
        for (int k = 0; pend && pend[k] != -1; k++)
            if (pend[k] == toks[i]) pending = true;
        if (pending) {
            i++;
            continue;
        }
        int t = toks[i];
        toks[i] = toks[--ntoks];
        pthread_mutex_unlock(&tok_mu);
        on_delivered(NULL, t);
        pthread_mutex_lock(&tok_mu);
    }
    pthread_mutex_unlock(&tok_mu);
    if (pend) MQTTClient_free(pend);
}

static bool worker_connected; /* the handle holds a live connection (worker only) */
static uint64_t worker_keepalive_ms;

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&job_mu);
        if (!worker_connected)
            while (!jobs_head) pthread_cond_wait(&job_cv, &job_mu);
        job *j = jobs_head;
        if (j) {
            jobs_head = j->next;
            if (!jobs_head) jobs_tail = NULL;
        }
        pthread_mutex_unlock(&job_mu);
        if (j) {
            if (j->kind == JOB_CONNECT) {
                do_connect(j);
                worker_connected = cli_created && MQTTClient_isConnected(cli);
                worker_keepalive_ms = (uint64_t)j->keepalive * 1000;
                __atomic_store_n(&last_rx_ms, hil_port_uptime_ms(), __ATOMIC_RELAXED);
            } else {
                __atomic_store_n(&graceful_disconnect, j->graceful, __ATOMIC_RELAXED);
                if (cli_created && MQTTClient_isConnected(cli)) MQTTClient_disconnect(cli, j->graceful ? 250 : 0);
                __atomic_store_n(&graceful_disconnect, false, __ATOMIC_RELAXED);
                worker_connected = false;
                pthread_mutex_lock(&tok_mu);
                ntoks = 0;
                pthread_mutex_unlock(&tok_mu);
            }
            job_free(j);
            continue;
        }
        /* Cycle the connection: inbound PUBLISHes, PUBACKs, keep-alive. */
        char *topic = NULL;
        int tl = 0;
        MQTTClient_message *m = NULL;
        int rc = MQTTClient_receive(cli, &topic, &tl, &m, 20);
        if (m) on_message(NULL, topic, tl, m);
        else if (topic) MQTTClient_free(topic);
        check_deliveries();
        if ((rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED) || !MQTTClient_isConnected(cli)) {
            worker_connected = false;
            on_lost(NULL, "connection lost");
            continue;
        }
        /* Keep-alive watchdog (RECON-013): Paho sends PINGREQ after one
         * keep-alive without traffic but gives up only one more keep-alive
         * later. A live hub answers a PINGREQ at once, so nothing read for
         * 1.5 x keep-alive means a dead link. */
        uint64_t quiet = hil_port_uptime_ms() - __atomic_load_n(&last_rx_ms, __ATOMIC_RELAXED);
        if (worker_keepalive_ms && quiet > worker_keepalive_ms * 3 / 2) {
            worker_connected = false;
            MQTTClient_disconnect(cli, 0);
            on_lost(NULL, "keep-alive: nothing from the hub for 1.5 x keep-alive");
        }
    }
    return NULL;
}

static int enqueue(job *j)
{
    pthread_mutex_lock(&job_mu);
    if (!worker_started) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, NULL) != 0) {
            pthread_mutex_unlock(&job_mu);
            return -1;
        }
        pthread_detach(t);
        worker_started = true;
    }
    if (jobs_tail) jobs_tail->next = j;
    else jobs_head = j;
    jobs_tail = j;
    pthread_cond_signal(&job_cv);
    pthread_mutex_unlock(&job_mu);
    return 0;
}

static int put_file(const char *name, const char *content, char *path_out, size_t cap)
{
    path_of(path_out, cap, name);
    if (!content) {
        path_out[0] = 0;
        return 0;
    }
    return write_file(path_out, content, strlen(content));
}

int hil_port_mqtt_connect(const hil_mqtt_params *p)
{
    job *j = calloc(1, sizeof(*j));
    if (!j) return -1;
    j->kind = JOB_CONNECT;
    snprintf(j->uri, sizeof(j->uri), "ssl://%s:%d", p->host, p->dial_port);
    snprintf(j->client_id, sizeof(j->client_id), "%s", p->client_id);
    snprintf(j->username, sizeof(j->username), "%s", p->username);
    snprintf(j->password, sizeof(j->password), "%s", p->password ? p->password : "");
    snprintf(j->host, sizeof(j->host), "%s", p->host);
    j->keepalive = p->keepalive_s;
    j->clean = p->clean_session;
    if (p->will_topic) {
        j->has_will = true;
        snprintf(j->will_topic, sizeof(j->will_topic), "%s", p->will_topic);
        j->will_payload = strdup(p->will_payload ? p->will_payload : "");
        if (!j->will_payload) j->has_will = false;
    }
    for (int i = 0; i < p->nfilters && i < 4; i++) {
        snprintf(j->filters[i], sizeof(j->filters[i]), "%s", p->filters[i]);
        j->filter_ptrs[i] = j->filters[i];
        j->filter_qos[i] = p->filter_qos[i];
        j->nfilters = i + 1;
    }
    /* Files per attempt, so that no attempt removes another's key. */
    static unsigned n;
    char n1[64], n2[64], n3[64];
    n++;
    snprintf(n1, sizeof(n1), "tls-trust-%u.pem", n);
    snprintf(n2, sizeof(n2), "tls-cert-%u.pem", n);
    snprintf(n3, sizeof(n3), "tls-key-%u.pem", n);
    if (put_file(n1, p->trust_pem ? p->trust_pem : "", j->trust, sizeof(j->trust)) || put_file(n2, p->cert_pem, j->cert, sizeof(j->cert)) ||
        put_file(n3, p->key_pem, j->key, sizeof(j->key))) {
        job_free(j);
        return -1;
    }
    pthread_mutex_lock(&resolve_mu);
    snprintf(resolve_host, sizeof(resolve_host), "%s", p->host);
    snprintf(resolve_to, sizeof(resolve_to), "%s", p->dial_host);
    pthread_mutex_unlock(&resolve_mu);
    cur_gen++;
    cur_active = false;
    j->gen = cur_gen;
    return enqueue(j) == 0 ? 0 : (job_free(j), -1);
}

int hil_port_mqtt_publish(const char *topic, const void *payload, size_t len, int qos, int *msg_id)
{
    if (!cur_active || conn_gen != cur_gen) return -1;
    MQTTClient_message m = MQTTClient_message_initializer;
    m.payload = (void *)payload;
    m.payloadlen = (int)len;
    m.qos = qos;
    m.retained = 0;
    MQTTClient_deliveryToken dt = 0;
    int rc = MQTTClient_publishMessage(cli, topic, &m, &dt);
    if (msg_id) *msg_id = (int)dt;
    if (rc == MQTTCLIENT_SUCCESS && qos == 1) {
        pthread_mutex_lock(&tok_mu);
        if (ntoks < (int)(sizeof(toks) / sizeof(toks[0]))) toks[ntoks++] = (int)dt;
        pthread_mutex_unlock(&tok_mu);
    }
    return rc == MQTTCLIENT_SUCCESS ? 0 : rc;
}

void hil_port_mqtt_disconnect(bool graceful)
{
    cur_gen++; /* callbacks of the old connection are dropped from here on */
    cur_active = false;
    job *j = calloc(1, sizeof(*j));
    if (!j) return;
    j->kind = JOB_DISCONNECT;
    j->graceful = graceful;
    j->gen = cur_gen;
    if (enqueue(j) != 0) free(j);
}
