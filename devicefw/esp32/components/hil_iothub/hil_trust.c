/* Trust anchors for trust.list: certificates of a PEM bundle as
 * {subject, sha256, source}, via mbedTLS (X.509 parsing, SHA-256), so the
 * core stays portable (ESP-IDF ships the same library). */
#include <stdio.h>
#include <string.h>

#include "cJSON.h"
#include "hil_iothub.h"
#include "mbedtls/md.h"
#include "mbedtls/oid.h"
#include "mbedtls/x509_crt.h"

int hil_hex_upper(const unsigned char *b, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    if (2 * n + 1 > cap) return -1;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = 0;
    return (int)(2 * n);
}

/* One attribute value escaped as RFC 4514 requires (Go's
 * pkix.Name.String): , + " \ < > ; everywhere, # and space at the start,
 * space at the end. */
static size_t put_value(const unsigned char *v, size_t n, char *out, size_t pos, size_t cap)
{
    for (size_t i = 0; i < n && pos + 3 < cap; i++) {
        unsigned char c = v[i];
        bool esc = strchr(",+\"\\<>;", c) != NULL && c != 0;
        if ((i == 0 && (c == '#' || c == ' ')) || (i == n - 1 && c == ' ')) esc = true;
        if (esc) out[pos++] = '\\';
        out[pos++] = (char)c;
    }
    out[pos] = 0;
    return pos;
}

int hil_x509_subject(const void *crt, char *out, size_t cap)
{
    const mbedtls_x509_crt *c = crt;
    const mbedtls_x509_name *rdn[32];
    size_t n = 0, pos = 0;
    if (cap == 0) return -1;
    out[0] = 0;
    for (const mbedtls_x509_name *e = &c->subject; e && n < 32; e = e->next)
        if (e->oid.p) rdn[n++] = e;
    /* RFC 4514 order: the last RDN of the DER sequence first. */
    while (n > 0) {
        const mbedtls_x509_name *e = rdn[--n];
        const char *sn = NULL;
        char oid[64];
        if (mbedtls_oid_get_attr_short_name(&e->oid, &sn) != 0) {
            if (mbedtls_oid_get_numeric_string(oid, sizeof(oid), &e->oid) < 0) return -1;
            sn = oid;
        }
        int w = snprintf(out + pos, cap - pos, "%s%s=", pos ? "," : "", sn);
        if (w < 0 || (size_t)w >= cap - pos) return -1;
        pos += (size_t)w;
        pos = put_value(e->val.p, e->val.len, out, pos, cap);
    }
    return (int)pos;
}

static bool wanted(const cJSON *filter, const char *fp)
{
    if (!filter || cJSON_GetArraySize(filter) == 0) return true; /* as the Go firmware */
    const cJSON *f;
    cJSON_ArrayForEach(f, filter)
    {
        const char *s = cJSON_GetStringValue(f);
        if (!s || strlen(s) != strlen(fp)) continue;
        size_t i = 0;
        while (fp[i] && (s[i] == fp[i] || (s[i] >= 'a' && s[i] <= 'f' && s[i] - 32 == fp[i]))) i++;
        if (!fp[i]) return true;
    }
    return false;
}

int hil_trust_list_append(struct cJSON *arr, const char *pem, const char *source, const struct cJSON *filter)
{
    if (!pem || !*pem) return 0;
    mbedtls_x509_crt chain;
    mbedtls_x509_crt_init(&chain);
    /* PEM input must include the terminating NUL in its length. */
    int rc = mbedtls_x509_crt_parse(&chain, (const unsigned char *)pem, strlen(pem) + 1);
    if (rc < 0) {
        mbedtls_x509_crt_free(&chain);
        return -1;
    }
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    for (const mbedtls_x509_crt *c = &chain; c && c->raw.p; c = c->next) {
        unsigned char h[32];
        char fp[65], subject[512];
        if (mbedtls_md(md, c->raw.p, c->raw.len, h) != 0) continue;
        hil_hex_upper(h, sizeof(h), fp, sizeof(fp));
        if (!wanted(filter, fp)) continue;
        if (hil_x509_subject(c, subject, sizeof(subject)) < 0) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "subject", subject);
        cJSON_AddStringToObject(o, "sha256", fp);
        cJSON_AddStringToObject(o, "source", source);
        cJSON_AddItemToArray(arr, o);
    }
    mbedtls_x509_crt_free(&chain);
    return rc; /* certificates that did not parse */
}
