/* hil_iothub wire-convention unit tests against devicefw/testdata/iothub.json. */
#include <string.h>

#include "hil_iothub.h"
#include "vectors.h"

/* Bag from the JSON form [{name, value, noValue}]. */
static size_t bag_of(const cJSON *arr, hil_prop *p, size_t max)
{
    size_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        if (n == max) break;
        p[n].name = hil_str(e, "name");
        p[n].value = hil_str(e, "value");
        p[n].novalue = hil_bool(e, "noValue");
        n++;
    }
    return n;
}

static int same_bag(const hil_prop *a, size_t na, const hil_prop *b, size_t nb)
{
    if (na != nb) return 0;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].name, b[i].name) || strcmp(a[i].value, b[i].value) || a[i].novalue != b[i].novalue) return 0;
    return 1;
}

static char *slurp(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[2][8192];
    static int k;
    char *b = buf[k++ & 1];
    size_t n = fread(b, 1, sizeof(buf[0]) - 1, f);
    fclose(f);
    b[n] = 0;
    return b;
}

#define G2_FP "CB3CCBB76031E5E0138F8DD39A23F9DE47FFC35E43C1144CEA27D46A5AB1CB5F"
#define BALT_FP "16AF57A9F676B0AB126095AA5EBADEF22AB31119D644AC95CD4B93DBF3F26AEB"

/* trust.list entries from the public roots (certs/public), fingerprints
 * and subjects as `openssl x509 -fingerprint -sha256 -nameopt RFC2253`. */
static void test_trust(const char *dir)
{
    const char *g2 = slurp(dir, "digicert-global-root-g2.pem"), *balt = slurp(dir, "baltimore-cybertrust-root.pem");
    CHECK(g2 && balt, "read %s", dir);
    if (!g2 || !balt) return;
    char both[16384];
    snprintf(both, sizeof(both), "%s%s", g2, balt);
    cJSON *arr = cJSON_CreateArray();
    CHECK(hil_trust_list_append(arr, both, "factory", NULL) == 0, "parse bundle");
    CHECK(cJSON_GetArraySize(arr) == 2, "two roots, got %d", cJSON_GetArraySize(arr));
    const cJSON *a = cJSON_GetArrayItem(arr, 0), *b = cJSON_GetArrayItem(arr, 1);
    CHECK(strcmp(hil_str(a, "sha256"), G2_FP) == 0, "G2 fingerprint %s", hil_str(a, "sha256"));
    CHECK(strcmp(hil_str(a, "subject"), "CN=DigiCert Global Root G2,OU=www.digicert.com,O=DigiCert Inc,C=US") == 0,
          "G2 subject %s", hil_str(a, "subject"));
    CHECK(strcmp(hil_str(a, "source"), "factory") == 0, "source");
    CHECK(strcmp(hil_str(b, "sha256"), BALT_FP) == 0, "Baltimore fingerprint %s", hil_str(b, "sha256"));
    CHECK(strcmp(hil_str(b, "subject"), "CN=Baltimore CyberTrust Root,OU=CyberTrust,O=Baltimore,C=IE") == 0,
          "Baltimore subject %s", hil_str(b, "subject"));
    cJSON_Delete(arr);

    /* filter: any case, only the roots among the fingerprints */
    cJSON *f = cJSON_CreateArray();
    cJSON_AddItemToArray(f, cJSON_CreateString("16af57a9f676b0ab126095aa5ebadef22ab31119d644ac95cd4b93dbf3f26aeb"));
    cJSON_AddItemToArray(f, cJSON_CreateString("00"));
    arr = cJSON_CreateArray();
    hil_trust_list_append(arr, both, "configured", f);
    CHECK(cJSON_GetArraySize(arr) == 1 && strcmp(hil_str(cJSON_GetArrayItem(arr, 0), "sha256"), BALT_FP) == 0,
          "filtered to Baltimore");
    cJSON_Delete(arr);
    cJSON_DeleteItemFromArray(f, 0);
    arr = cJSON_CreateArray();
    hil_trust_list_append(arr, both, "configured", f);
    CHECK(cJSON_GetArraySize(arr) == 0, "filter without a match");
    cJSON_Delete(arr);
    cJSON_Delete(f);

    /* an empty filter lists everything (as the Go firmware); bad PEM, none */
    f = cJSON_CreateArray();
    arr = cJSON_CreateArray();
    hil_trust_list_append(arr, g2, "configured", f);
    CHECK(cJSON_GetArraySize(arr) == 1, "empty filter");
    CHECK(hil_trust_list_append(arr, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "x", NULL) < 0,
          "bad PEM");
    CHECK(hil_trust_list_append(arr, NULL, "x", NULL) == 0 && hil_trust_list_append(arr, "", "x", NULL) == 0, "no PEM");
    CHECK(cJSON_GetArraySize(arr) == 1, "nothing added");
    cJSON_Delete(arr);
    cJSON_Delete(f);

    /* fingerprint hex */
    char hex[5];
    const unsigned char bytes[2] = {0xAB, 0x01};
    CHECK(hil_hex_upper(bytes, 2, hex, sizeof(hex)) == 4 && strcmp(hex, "AB01") == 0, "hex");
    CHECK(hil_hex_upper(bytes, 2, hex, 4) == -1, "hex cap");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_iothub iothub.json certs/public\n");
        return 2;
    }
    cJSON *v = hil_load_vectors(argv[1]);
    const cJSON *c;
    char out[2048], store[1024];
    hil_prop p[16], q[16];

    cJSON_ArrayForEach(c, cJSON_GetObjectItem(v, "bagEncode"))
    {
        size_t n = bag_of(cJSON_GetObjectItem(c, "bag"), p, 16);
        int k = hil_bag_encode(p, n, out, sizeof(out));
        CHECK(k >= 0 && strcmp(out, hil_str(c, "encoded")) == 0, "encode = %s, golden %s", out, hil_str(c, "encoded"));
        /* too small a buffer is refused, never truncated */
        if (k > 0) CHECK(hil_bag_encode(p, n, out, (size_t)k) == -1, "short buffer");
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(v, "bagParse"))
    {
        const char *text = hil_str(c, "text");
        int k = hil_bag_parse(text, strlen(text), store, sizeof(store), q, 16);
        if (hil_bool(c, "error")) {
            CHECK(k < 0, "parse %s: accepted, golden error", text);
        } else {
            size_t n = bag_of(cJSON_GetObjectItem(c, "bag"), p, 16);
            CHECK(k >= 0 && same_bag(q, (size_t)k, p, n), "parse %s: %d properties", text, k);
        }
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(v, "sas"))
    {
        int k = hil_sas_token(hil_str(c, "resource"), hil_str(c, "key"), (int64_t)hil_num(c, "se"), out, sizeof(out));
        CHECK(k > 0 && strcmp(out, hil_str(c, "token")) == 0, "token = %s\n golden %s", out, hil_str(c, "token"));
        char msg[600];
        snprintf(msg, sizeof(msg), "%s\n%lld", hil_str(c, "sr"), (long long)hil_num(c, "se"));
        k = hil_sas_sign(hil_str(c, "key"), msg, strlen(msg), out, sizeof(out));
        CHECK(k > 0 && strcmp(out, hil_str(c, "sig")) == 0, "sig = %s, golden %s", out, hil_str(c, "sig"));
    }
    CHECK(hil_sas_token("h/devices/d", "not base64!", 1, out, sizeof(out)) < 0, "bad key refused");
    CHECK(hil_sas_token("h/devices/d", "", 1, out, sizeof(out)) < 0, "empty key refused");
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(v, "usernames"))
    {
        int k = hil_username(hil_str(c, "host"), hil_str(c, "deviceId"), hil_str(c, "moduleId"), hil_str(c, "apiVersion"),
                             hil_str(c, "clientType"), hil_str(c, "modelId"), out, sizeof(out));
        CHECK(k > 0 && strcmp(out, hil_str(c, "username")) == 0, "username = %s, golden %s", out, hil_str(c, "username"));
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(v, "topics"))
    {
        const char *kind = hil_str(c, "kind");
        int k = -1;
        if (!strcmp(kind, "telemetry")) {
            size_t n = bag_of(cJSON_GetObjectItem(c, "bag"), p, 16);
            k = hil_topic_telemetry(hil_str(c, "deviceId"), hil_str(c, "moduleId"), p, n, out, sizeof(out));
        } else if (!strcmp(kind, "c2dFilter")) k = hil_topic_c2d_filter(hil_str(c, "deviceId"), out, sizeof(out));
        else if (!strcmp(kind, "twinGet")) k = hil_topic_twin_get(hil_str(c, "rid"), out, sizeof(out));
        else if (!strcmp(kind, "twinReported")) k = hil_topic_twin_reported(hil_str(c, "rid"), out, sizeof(out));
        else if (!strcmp(kind, "methodResponse")) k = hil_topic_method_response((int)hil_num(c, "status"), hil_str(c, "rid"), out, sizeof(out));
        CHECK(k > 0 && strcmp(out, hil_str(c, "topic")) == 0, "%s topic = %s, golden %s", kind, out, hil_str(c, "topic"));
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(v, "parseTopic"))
    {
        const char *topic = hil_str(c, "topic");
        hil_topic t;
        int rc = hil_topic_parse(topic, &t);
        CHECK((rc < 0) == hil_bool(c, "error"), "%s: rc %d", topic, rc);
        CHECK(strcmp(hil_topic_kind_name(t.kind), hil_str(c, "kind")) == 0, "%s: kind %s", topic, hil_topic_kind_name(t.kind));
        if (rc < 0) continue;
        const char *rid = hil_str(c, "rid");
        CHECK(t.has_rid == hil_bool(c, "hasRid") && t.rid_len == strlen(rid) && (!t.rid_len || memcmp(t.rid, rid, t.rid_len) == 0), "%s: rid", topic);
        CHECK(t.status == (int)hil_num(c, "status"), "%s: status %d", topic, t.status);
        CHECK(t.has_version == hil_bool(c, "hasVersion") && t.version == (int64_t)hil_num(c, "version"), "%s: version", topic);
        const char *m = hil_str(c, "methodName");
        CHECK(t.method_len == strlen(m) && (!t.method_len || memcmp(t.method, m, t.method_len) == 0), "%s: method", topic);
        if (t.kind == HIL_TOPIC_C2D) {
            int k = hil_bag_parse(t.bag, t.bag_len, store, sizeof(store), q, 16);
            size_t n = bag_of(cJSON_GetObjectItem(c, "props"), p, 16);
            CHECK(k >= 0 && same_bag(q, (size_t)k, p, n), "%s: props", topic);
        }
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(v, "backoff"))
    {
        uint32_t ini = (uint32_t)hil_num(c, "initialMs"), mx = (uint32_t)hil_num(c, "maxMs"), j = (uint32_t)hil_num(c, "jitterPct");
        int n = (int)hil_num(c, "attempt");
        uint32_t lo = (uint32_t)hil_num(c, "minDelayMs"), hi = (uint32_t)hil_num(c, "maxDelayMs");
        CHECK(hil_backoff_ms(ini, mx, j, n, 0) == hi, "backoff %u/%u/%u #%d no jitter = %u, golden %u", ini, mx, j, n, hil_backoff_ms(ini, mx, j, n, 0), hi);
        uint32_t most = hil_backoff_ms(ini, mx, j, n, 0xffffffffu);
        CHECK(most >= lo && most <= hi, "backoff full jitter %u outside [%u, %u]", most, lo, hi);
        for (uint32_t r = 1; r < 50; r++) {
            uint32_t d = hil_backoff_ms(ini, mx, j, n, r * 87654321u);
            CHECK(d >= lo && d <= hi, "backoff %u outside [%u, %u]", d, lo, hi);
        }
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(v, "twinVersion"))
    {
        int64_t held = (int64_t)hil_num(c, "held"), in = (int64_t)hil_num(c, "incoming");
        bool ok = strcmp(hil_str(c, "kind"), "patch") == 0 ? hil_twin_patch_applies(held, in) : hil_twin_get_applies(held, in);
        CHECK(ok == hil_bool(c, "applied"), "twin %s held %lld incoming %lld", hil_str(c, "kind"), (long long)held, (long long)in);
        CHECK((ok ? in : held) == (int64_t)hil_num(c, "after"), "twin after");
    }
    test_trust(argv[2]);
    /* renewal at 0.8 of a 100 s token expiring at 1000 s: 980 s */
    CHECK(hil_sas_renew_at_ms(1000, 100, 0.8) == 980000, "renew at");
    cJSON_Delete(v);
    printf("test_iothub: %d checks, %d failures\n", hil_test_checks, hil_test_failures);
    return hil_test_failures ? 1 : 0;
}
