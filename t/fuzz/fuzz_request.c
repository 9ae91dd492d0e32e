
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Fuzzes every parser of vetting_request.h with the same input, and
 * checks what each promises about its output.  For the classification
 * the input is read as "METHOD path?query".
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vetting_request.h"


static const char  *fuzz_names[] = {
    "client_id", "code", "_getpages", "a", "", NULL
};


static void
fuzz_bearer(const uint8_t *data, size_t size)
{
    size_t         i;
    vetting_str_t  t;

    if (vetting_parse_bearer(data, size, &t) != VETTING_OK) {
        return;
    }

    if (t.len == 0 || t.data < data || t.data + t.len > data + size) {
        abort();
    }

    for (i = 0; i < t.len; i++) {
        if (t.data[i] == ' ' || t.data[i] < 0x21 || t.data[i] > 0x7e) {
            abort();
        }
    }
}


static void
fuzz_basic(const uint8_t *data, size_t size)
{
    char    out[VETTING_APP_MAX + 1];
    size_t  sizes[] = { 0, 1, 2, 8, sizeof(out) };
    size_t  i, j, n;

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        if (vetting_parse_basic_client(data, size, out, sizes[i], &n)
            != VETTING_OK)
        {
            if (sizes[i] > 0 && out[0] != '\0') {
                abort();
            }

            continue;
        }

        if (n == 0 || n >= sizes[i] || strlen(out) != n) {
            abort();
        }

        for (j = 0; j < n; j++) {
            if ((unsigned char) out[j] < 0x20 || out[j] == 0x7f) {
                abort();
            }
        }
    }
}


static void
fuzz_form(const uint8_t *data, size_t size)
{
    int           get, has;
    char          out[64], *big;
    size_t        n;
    const char  **name;

    big = malloc(size + 1);
    if (big == NULL) {
        abort();
    }

    for (name = fuzz_names; *name != NULL; name++) {

        has = vetting_form_has(data, size, *name);

        /* with room for any value, get fails only when has says so */

        get = vetting_form_get(data, size, *name, big, size + 1, &n);

        if (has != (get != VETTING_DECLINED)
            || big[n] != '\0'
            || strlen(big) != n)
        {
            abort();
        }

        get = vetting_form_get(data, size, *name, out, sizeof(out), &n);

        if (get == VETTING_OK) {
            if (!has || n >= sizeof(out) || strlen(out) != n) {
                abort();
            }

        } else if (out[0] != '\0' || n != 0) {
            abort();
        }
    }

    free(big);
}


static void
fuzz_jwt(const uint8_t *data, size_t size)
{
    char    out[VETTING_APP_MAX + 1];
    size_t  n;

    if (vetting_jwt_issuer(data, size, out, sizeof(out), &n) != VETTING_OK) {
        if (out[0] != '\0' || n != 0) {
            abort();
        }

        return;
    }

    if (strlen(out) != n
        || !vetting_client_id_valid((unsigned char *) out, n))
    {
        abort();
    }
}


static void
fuzz_inside(const vetting_str_t *s, const uint8_t *p, size_t len)
{
    if (s->len == 0) {
        return;
    }

    if (s->data < p || s->data + s->len > p + len) {
        abort();
    }
}


static void
fuzz_classify(const uint8_t *data, size_t size)
{
    size_t                   i, m, q;
    vetting_fhir_request_t   req;

    for (m = 0; m < size && data[m] != ' '; m++) {
        /* void */
    }

    i = (m < size) ? m + 1 : size;

    for (q = i; q < size && data[q] != '?'; q++) {
        /* void */
    }

    vetting_fhir_classify((const char *) data, m, data + i, q - i,
                          q < size ? data + q + 1 : data + size,
                          q < size ? size - q - 1 : 0,
                          "everything\0export\0", &req);

    fuzz_inside(&req.type, data + i, q - i);
    fuzz_inside(&req.id, data + i, q - i);
    fuzz_inside(&req.operation, data + i, q - i);

    if (req.bad_method && !req.write) {
        abort();
    }

    if (req.needs_body && !req.write) {
        abort();
    }

    if (req.action != 'C' && req.action != 'R' && req.action != 'U'
        && req.action != 'D' && req.action != 'E')
    {
        abort();
    }

    /* only POST, PUT, PATCH, DELETE and unknown methods write */

    if (req.write
        && ((m == 3 && memcmp(data, "GET", 3) == 0)
            || (m == 4 && memcmp(data, "HEAD", 4) == 0)
            || (m == 7 && memcmp(data, "OPTIONS", 7) == 0)))
    {
        abort();
    }

    if (req.interaction == VETTING_FHIR_OPERATION && req.operation.len == 0) {
        abort();
    }
}


static void
fuzz_redact(const uint8_t *data, size_t size)
{
    char    out[256];
    size_t  sizes[] = { 1, 2, 9, sizeof(out) };
    size_t  i, n;

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        memset(out, 'X', sizeof(out));

        n = vetting_redact_query(data, size, out, sizes[i]);

        if (n >= sizes[i] || out[n] != '\0') {
            abort();
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int  rc;

    fuzz_bearer(data, size);
    fuzz_basic(data, size);
    fuzz_form(data, size);
    fuzz_jwt(data, size);
    fuzz_classify(data, size);
    fuzz_redact(data, size);

    rc = vetting_bundle_reads_only(data, size, size > 0 ? data[0] % 8 : 0);

    if (rc != VETTING_OK && rc != VETTING_DECLINED && rc != VETTING_ERROR) {
        abort();
    }

    if (vetting_fhir_id_valid(data, size)
        && (size == 0 || size > VETTING_MEMBER_MAX))
    {
        abort();
    }

    if (vetting_client_id_valid(data, size)
        && (size == 0 || size > VETTING_APP_MAX))
    {
        abort();
    }

    (void) vetting_is_override_header(data, size);

    return 0;
}
