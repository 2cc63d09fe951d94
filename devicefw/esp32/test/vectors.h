/* Test helpers: golden-vector loading and checks. */
#ifndef HIL_TEST_VECTORS_H
#define HIL_TEST_VECTORS_H
#include <stdio.h>

#include "cJSON.h"

extern int hil_test_failures;
extern int hil_test_checks;
cJSON *hil_load_vectors(const char *path);
const char *hil_str(const cJSON *o, const char *key); /* "" when absent */
double hil_num(const cJSON *o, const char *key);      /* 0 when absent */
int hil_bool(const cJSON *o, const char *key);

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        hil_test_checks++;                                                                                             \
        if (!(cond)) {                                                                                                 \
            hil_test_failures++;                                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);                                  \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
        }                                                                                                              \
    } while (0)
#endif
