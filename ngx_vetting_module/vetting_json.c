
/*
 * Copyright (C) ngx_vetting_module authors
 */


#include "vetting_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <yajl/yajl_gen.h>


#define VETTING_DCM            "http://dicom.nema.org/resources/ontology/DCM"
#define VETTING_THO            "http://terminology.hl7.org/CodeSystem/"
#define VETTING_INTERACTION    "http://hl7.org/fhir/restful-interaction"
#define VETTING_REASON         "urn:ngx-vetting:reason"
#define VETTING_CLIENT_ID      "urn:ngx-vetting:client-id"
#define VETTING_OBSERVER       "ngx_vetting_module"
#define VETTING_UNIDENTIFIED   "unidentified client"

/* the smallest scratch buffer for sanitized strings */
#define VETTING_JSON_TMP       256

/* 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: FHIR years */
#define VETTING_TIME_MIN       (-62135596800000LL)
#define VETTING_TIME_MAX       253402300799999LL


typedef struct {
    yajl_gen                    gen;

    /* the caller's buffer, written by the print callback */
    unsigned char              *out;
    size_t                      size;
    size_t                      len;

    /* scratch for strings that are built or repaired before writing */
    unsigned char              *tmp;
    size_t                      tmp_len;
    size_t                      tmp_size;

    unsigned                    error:1;
} vetting_json_t;


static int vetting_json_init(vetting_json_t *j, unsigned char *buf,
    size_t size);
static int vetting_json_done(vetting_json_t *j, size_t *len);
static void vetting_json_print(void *ctx, const char *str, size_t len);
static void vetting_json_status(vetting_json_t *j, yajl_gen_status rc);
static void vetting_json_open(vetting_json_t *j);
static void vetting_json_close(vetting_json_t *j);
static void vetting_json_array(vetting_json_t *j);
static void vetting_json_array_close(vetting_json_t *j);
static void vetting_json_bool(vetting_json_t *j, int value);
static void vetting_json_lit(vetting_json_t *j, const char *s);
static void vetting_json_text(vetting_json_t *j, const unsigned char *data,
    size_t len);
static void vetting_json_cstr(vetting_json_t *j, const char *s);
static void vetting_json_str(vetting_json_t *j, const vetting_str_t *s);
static void vetting_json_tmp_add(vetting_json_t *j,
    const unsigned char *data, size_t len);
static void vetting_json_tmp_emit(vetting_json_t *j);
static void vetting_json_coding(vetting_json_t *j, const char *system,
    const char *code, const char *display);
static void vetting_json_concept(vetting_json_t *j, const char *system,
    const char *code, const char *display);

static void vetting_audit_agents(vetting_json_t *j,
    const vetting_audit_event_t *ev);
static void vetting_audit_source(vetting_json_t *j,
    const vetting_audit_event_t *ev);
static void vetting_audit_entities(vetting_json_t *j,
    const vetting_audit_event_t *ev);
static void vetting_audit_details(vetting_json_t *j,
    const vetting_audit_event_t *ev, unsigned request, unsigned pairs);
static void vetting_audit_detail(vetting_json_t *j, const char *type,
    const unsigned char *data, size_t len);

static size_t vetting_utf8_next(const unsigned char *p, size_t len,
    int *valid);
static int vetting_utf8_valid(const unsigned char *p, size_t len);
static size_t vetting_utf8_size(const unsigned char *p, size_t len);
static void vetting_utf8_copy(unsigned char *dst, const unsigned char *p,
    size_t len);

static size_t vetting_ratelimit_item(char *buf, size_t size,
    const char *name, const char *k1, uint64_t v1, const char *k2,
    uint64_t v2);
static size_t vetting_sf_put(char *buf, size_t size, size_t n,
    const char *s, size_t len);
static size_t vetting_sf_number(char *buf, size_t size, size_t n,
    uint64_t v);
static char *vetting_time_digits(char *p, unsigned v, size_t n);


static const char  vetting_actions[] = "CRUDE";


int
vetting_audit_format(const vetting_audit_event_t *ev, unsigned char *buf,
    size_t size, size_t *len)
{
    char            recorded[25];
    size_t          n;
    vetting_json_t  j;

    if ((unsigned) ev->kind > VETTING_AUDIT_BLOCK) {
        return VETTING_ERROR;
    }

    if (vetting_json_init(&j, buf, size) != VETTING_OK) {
        return VETTING_ERROR;
    }

    vetting_json_open(&j);

    vetting_json_lit(&j, "resourceType");
    vetting_json_lit(&j, "AuditEvent");

    if (ev->id.len) {
        vetting_json_lit(&j, "id");
        vetting_json_str(&j, &ev->id);
    }

    vetting_json_lit(&j, "type");
    vetting_json_coding(&j, VETTING_DCM, "110113", "Security Alert");

    if (ev->interaction != NULL || ev->reason != NULL) {
        vetting_json_lit(&j, "subtype");
        vetting_json_array(&j);

        if (ev->interaction != NULL) {
            vetting_json_coding(&j, VETTING_INTERACTION, ev->interaction,
                                NULL);
        }

        if (ev->reason != NULL) {
            vetting_json_coding(&j, VETTING_REASON, ev->reason, NULL);
        }

        vetting_json_array_close(&j);
    }

    if (ev->action != 0 && strchr(vetting_actions, ev->action) != NULL) {
        vetting_json_lit(&j, "action");
        vetting_json_text(&j, (const unsigned char *) &ev->action, 1);
    }

    n = vetting_format_time(ev->time_ms, recorded);

    vetting_json_lit(&j, "recorded");
    vetting_json_text(&j, (const unsigned char *) recorded, n);

    /* a refused request is a minor failure; a match or a block succeeded */

    vetting_json_lit(&j, "outcome");
    vetting_json_lit(&j, ev->kind == VETTING_AUDIT_REFUSAL ? "4" : "0");

    if (ev->description.len) {
        vetting_json_lit(&j, "outcomeDesc");
        vetting_json_str(&j, &ev->description);
    }

    vetting_audit_agents(&j, ev);
    vetting_audit_source(&j, ev);
    vetting_audit_entities(&j, ev);

    vetting_json_close(&j);

    return vetting_json_done(&j, len);
}


static void
vetting_audit_agents(vetting_json_t *j, const vetting_audit_event_t *ev)
{
    vetting_json_lit(j, "agent");
    vetting_json_array(j);

    /* the app; the member, when known, is the requestor of record */

    vetting_json_open(j);

    vetting_json_lit(j, "type");
    vetting_json_concept(j, VETTING_DCM, "110150", "Application");

    if (ev->app.len) {
        vetting_json_lit(j, "who");
        vetting_json_open(j);
        vetting_json_lit(j, "identifier");
        vetting_json_open(j);
        vetting_json_lit(j, "system");
        vetting_json_lit(j, VETTING_CLIENT_ID);
        vetting_json_lit(j, "value");
        vetting_json_str(j, &ev->app);
        vetting_json_close(j);
        vetting_json_close(j);

    } else {
        vetting_json_lit(j, "name");
        vetting_json_lit(j, VETTING_UNIDENTIFIED);
    }

    vetting_json_lit(j, "requestor");
    vetting_json_bool(j, 0);

    if (ev->address.len) {
        vetting_json_lit(j, "network");
        vetting_json_open(j);
        vetting_json_lit(j, "address");
        vetting_json_str(j, &ev->address);
        vetting_json_lit(j, "type");
        vetting_json_lit(j, "2");
        vetting_json_close(j);
    }

    vetting_json_close(j);

    if (ev->member.len) {
        vetting_json_open(j);

        vetting_json_lit(j, "type");
        vetting_json_concept(j, VETTING_THO "v3-RoleClass", "PAT",
                             "patient");

        vetting_json_lit(j, "who");
        vetting_json_open(j);
        vetting_json_lit(j, "reference");
        j->tmp_len = 0;
        vetting_json_tmp_add(j, (const unsigned char *) "Patient/", 8);
        vetting_json_tmp_add(j, ev->member.data, ev->member.len);
        vetting_json_tmp_emit(j);
        vetting_json_close(j);

        vetting_json_lit(j, "requestor");
        vetting_json_bool(j, 1);

        vetting_json_close(j);
    }

    vetting_json_array_close(j);
}


static void
vetting_audit_source(vetting_json_t *j, const vetting_audit_event_t *ev)
{
    vetting_json_lit(j, "source");
    vetting_json_open(j);

    if (ev->gateway.len) {
        vetting_json_lit(j, "site");
        vetting_json_str(j, &ev->gateway);
    }

    vetting_json_lit(j, "observer");
    vetting_json_open(j);
    vetting_json_lit(j, "display");

    if (ev->gateway.len) {
        j->tmp_len = 0;
        vetting_json_tmp_add(j, (const unsigned char *) VETTING_OBSERVER " ",
                             sizeof(VETTING_OBSERVER " ") - 1);
        vetting_json_tmp_add(j, ev->gateway.data, ev->gateway.len);
        vetting_json_tmp_emit(j);

    } else {
        vetting_json_lit(j, VETTING_OBSERVER);
    }

    vetting_json_close(j);

    vetting_json_lit(j, "type");
    vetting_json_array(j);
    vetting_json_coding(j, VETTING_THO "security-source-type", "6",
                        "Security Server");
    vetting_json_array_close(j);

    vetting_json_close(j);
}


static void
vetting_audit_entities(vetting_json_t *j, const vetting_audit_event_t *ev)
{
    unsigned  block, request;

    block = (ev->kind == VETTING_AUDIT_BLOCK);
    request = (ev->method.len != 0);

    if (ev->member.len == 0 && !request && !block) {
        return;
    }

    vetting_json_lit(j, "entity");
    vetting_json_array(j);

    if (ev->member.len) {
        vetting_json_open(j);

        vetting_json_lit(j, "what");
        vetting_json_open(j);
        vetting_json_lit(j, "reference");
        j->tmp_len = 0;
        vetting_json_tmp_add(j, (const unsigned char *) "Patient/", 8);
        vetting_json_tmp_add(j, ev->member.data, ev->member.len);
        vetting_json_tmp_emit(j);
        vetting_json_close(j);

        vetting_json_lit(j, "type");
        vetting_json_coding(j, VETTING_THO "audit-entity-type", "1",
                            "Person");
        vetting_json_lit(j, "role");
        vetting_json_coding(j, VETTING_THO "object-role", "1", "Patient");

        vetting_json_close(j);
    }

    if (request) {

        /*
         * the request line goes in "description", not "name" and not
         * "query": sev-1 forbids name with query, and the query is kept
         * out because it may carry member data
         */

        vetting_json_open(j);

        vetting_json_lit(j, "type");
        vetting_json_coding(j, VETTING_THO "audit-entity-type", "2",
                            "System Object");
        vetting_json_lit(j, "role");
        vetting_json_coding(j, VETTING_THO "object-role", "24", "Query");

        vetting_json_lit(j, "description");
        j->tmp_len = 0;
        vetting_json_tmp_add(j, ev->method.data, ev->method.len);
        vetting_json_tmp_add(j, (const unsigned char *) " ", 1);
        vetting_json_tmp_add(j, ev->uri.data, ev->uri.len);
        vetting_json_tmp_emit(j);

        vetting_audit_details(j, ev, 1, !block);

        vetting_json_close(j);
    }

    if (block) {

        /*
         * the suspended app: its client registration is an account
         * with a security role whose rights were withdrawn, which is
         * what object-role 11 "Security User Entity" stands for; 4
         * "Domain Resource" is meant for clinical or business data
         */

        vetting_json_open(j);

        vetting_json_lit(j, "what");
        vetting_json_open(j);

        if (ev->app.len) {
            vetting_json_lit(j, "identifier");
            vetting_json_open(j);
            vetting_json_lit(j, "system");
            vetting_json_lit(j, VETTING_CLIENT_ID);
            vetting_json_lit(j, "value");
            vetting_json_str(j, &ev->app);
            vetting_json_close(j);

        } else {
            vetting_json_lit(j, "display");
            vetting_json_lit(j, VETTING_UNIDENTIFIED);
        }

        vetting_json_close(j);

        vetting_json_lit(j, "type");
        vetting_json_coding(j, VETTING_THO "audit-entity-type", "2",
                            "System Object");
        vetting_json_lit(j, "role");
        vetting_json_coding(j, VETTING_THO "object-role", "11",
                            "Security User Entity");

        /* tenant and country go here when no request entity has them */

        vetting_audit_details(j, ev, !request, 1);

        vetting_json_close(j);
    }

    vetting_json_array_close(j);
}


/*
 * Writes "detail": the request facts (status, tenant, country) when
 * request is set and the caller's pairs when pairs is set; nothing when
 * there is nothing to write, as FHIR forbids empty arrays.
 */

static void
vetting_audit_details(vetting_json_t *j, const vetting_audit_event_t *ev,
    unsigned request, unsigned pairs)
{
    char    status[16];
    size_t  i, n;

    n = 0;

    if (request) {
        n += (ev->status != 0) + (ev->tenant.len != 0)
             + (ev->country.len != 0);
    }

    if (pairs) {
        for (i = 0; i < ev->ndetails; i++) {
            n += (ev->details[i].type != NULL);
        }
    }

    if (n == 0) {
        return;
    }

    vetting_json_lit(j, "detail");
    vetting_json_array(j);

    if (request) {
        if (ev->status != 0) {
            n = (size_t) snprintf(status, sizeof(status), "%u", ev->status);
            vetting_audit_detail(j, "http-status",
                                 (const unsigned char *) status, n);
        }

        if (ev->tenant.len) {
            vetting_audit_detail(j, "tenant", ev->tenant.data,
                                 ev->tenant.len);
        }

        if (ev->country.len) {
            vetting_audit_detail(j, "country", ev->country.data,
                                 ev->country.len);
        }
    }

    if (pairs) {
        for (i = 0; i < ev->ndetails; i++) {
            if (ev->details[i].type == NULL) {
                continue;
            }

            vetting_audit_detail(j, ev->details[i].type,
                                 ev->details[i].value.data,
                                 ev->details[i].value.len);
        }
    }

    vetting_json_array_close(j);
}


static void
vetting_audit_detail(vetting_json_t *j, const char *type,
    const unsigned char *data, size_t len)
{
    vetting_json_open(j);
    vetting_json_lit(j, "type");
    vetting_json_cstr(j, type);
    vetting_json_lit(j, "valueString");
    vetting_json_text(j, data, len);
    vetting_json_close(j);
}


int
vetting_outcome_format(const char *severity, const char *code,
    const char *details, const char *diagnostics, unsigned char *buf,
    size_t size, size_t *len)
{
    vetting_json_t  j;

    if (severity == NULL || code == NULL) {
        return VETTING_ERROR;
    }

    if (vetting_json_init(&j, buf, size) != VETTING_OK) {
        return VETTING_ERROR;
    }

    vetting_json_open(&j);

    vetting_json_lit(&j, "resourceType");
    vetting_json_lit(&j, "OperationOutcome");

    vetting_json_lit(&j, "issue");
    vetting_json_array(&j);
    vetting_json_open(&j);

    vetting_json_lit(&j, "severity");
    vetting_json_cstr(&j, severity);
    vetting_json_lit(&j, "code");
    vetting_json_cstr(&j, code);

    if (details != NULL) {
        vetting_json_lit(&j, "details");
        vetting_json_concept(&j, VETTING_THO "operation-outcome", details,
                             NULL);
    }

    if (diagnostics != NULL) {
        vetting_json_lit(&j, "diagnostics");
        vetting_json_cstr(&j, diagnostics);
    }

    vetting_json_close(&j);
    vetting_json_array_close(&j);
    vetting_json_close(&j);

    return vetting_json_done(&j, len);
}


int
vetting_oauth_error_format(const char *error, const char *description,
    unsigned char *buf, size_t size, size_t *len)
{
    vetting_json_t  j;

    if (error == NULL) {
        return VETTING_ERROR;
    }

    if (vetting_json_init(&j, buf, size) != VETTING_OK) {
        return VETTING_ERROR;
    }

    vetting_json_open(&j);

    vetting_json_lit(&j, "error");
    vetting_json_cstr(&j, error);

    if (description != NULL) {
        vetting_json_lit(&j, "error_description");
        vetting_json_cstr(&j, description);
    }

    vetting_json_close(&j);

    return vetting_json_done(&j, len);
}


static int
vetting_json_init(vetting_json_t *j, unsigned char *buf, size_t size)
{
    memset(j, 0, sizeof(vetting_json_t));

    j->out = buf;
    j->size = size;

    j->gen = yajl_gen_alloc(NULL);
    if (j->gen == NULL) {
        return VETTING_ERROR;
    }

    if (!yajl_gen_config(j->gen, yajl_gen_print_callback,
                         vetting_json_print, j))
    {
        yajl_gen_free(j->gen);
        return VETTING_ERROR;
    }

    return VETTING_OK;
}


static int
vetting_json_done(vetting_json_t *j, size_t *len)
{
    yajl_gen_free(j->gen);
    free(j->tmp);

    if (j->error) {
        return VETTING_ERROR;
    }

    *len = j->len;

    return VETTING_OK;
}


static void
vetting_json_print(void *ctx, const char *str, size_t len)
{
    vetting_json_t  *j = ctx;

    if (j->error) {
        return;
    }

    if (len > j->size - j->len) {
        j->error = 1;
        return;
    }

    memcpy(j->out + j->len, str, len);
    j->len += len;
}


static void
vetting_json_status(vetting_json_t *j, yajl_gen_status rc)
{
    if (rc != yajl_gen_status_ok) {
        j->error = 1;
    }
}


static void
vetting_json_open(vetting_json_t *j)
{
    if (!j->error) {
        vetting_json_status(j, yajl_gen_map_open(j->gen));
    }
}


static void
vetting_json_close(vetting_json_t *j)
{
    if (!j->error) {
        vetting_json_status(j, yajl_gen_map_close(j->gen));
    }
}


static void
vetting_json_array(vetting_json_t *j)
{
    if (!j->error) {
        vetting_json_status(j, yajl_gen_array_open(j->gen));
    }
}


static void
vetting_json_array_close(vetting_json_t *j)
{
    if (!j->error) {
        vetting_json_status(j, yajl_gen_array_close(j->gen));
    }
}


static void
vetting_json_bool(vetting_json_t *j, int value)
{
    if (!j->error) {
        vetting_json_status(j, yajl_gen_bool(j->gen, value));
    }
}


/* a key or a value fixed in this file: ASCII, nothing to check */

static void
vetting_json_lit(vetting_json_t *j, const char *s)
{
    if (!j->error) {
        vetting_json_status(j, yajl_gen_string(j->gen,
                                               (const unsigned char *) s,
                                               strlen(s)));
    }
}


static void
vetting_json_text(vetting_json_t *j, const unsigned char *data, size_t len)
{
    if (j->error) {
        return;
    }

    if (data == NULL || len == 0) {
        vetting_json_status(j, yajl_gen_string(j->gen,
                                               (const unsigned char *) "",
                                               0));
        return;
    }

    if (vetting_utf8_valid(data, len)) {
        vetting_json_status(j, yajl_gen_string(j->gen, data, len));
        return;
    }

    j->tmp_len = 0;
    vetting_json_tmp_add(j, data, len);
    vetting_json_tmp_emit(j);
}


static void
vetting_json_cstr(vetting_json_t *j, const char *s)
{
    if (s == NULL) {
        s = "";
    }

    vetting_json_text(j, (const unsigned char *) s, strlen(s));
}


static void
vetting_json_str(vetting_json_t *j, const vetting_str_t *s)
{
    vetting_json_text(j, s->data, s->len);
}


/* appends data to the scratch string, invalid UTF-8 replaced */

static void
vetting_json_tmp_add(vetting_json_t *j, const unsigned char *data,
    size_t len)
{
    size_t          need, size;
    unsigned char  *tmp;

    if (j->error || data == NULL || len == 0) {
        return;
    }

    need = vetting_utf8_size(data, len);

    /* a string longer than the output buffer can never fit in it */

    if (need > j->size || j->tmp_len > j->size - need) {
        j->error = 1;
        return;
    }

    need += j->tmp_len;

    if (need > j->tmp_size) {
        size = (need < VETTING_JSON_TMP) ? VETTING_JSON_TMP : need;

        tmp = realloc(j->tmp, size);
        if (tmp == NULL) {
            j->error = 1;
            return;
        }

        j->tmp = tmp;
        j->tmp_size = size;
    }

    vetting_utf8_copy(j->tmp + j->tmp_len, data, len);
    j->tmp_len = need;
}


static void
vetting_json_tmp_emit(vetting_json_t *j)
{
    if (j->error) {
        return;
    }

    if (j->tmp_len == 0) {
        vetting_json_status(j, yajl_gen_string(j->gen,
                                               (const unsigned char *) "",
                                               0));
        return;
    }

    vetting_json_status(j, yajl_gen_string(j->gen, j->tmp, j->tmp_len));
}


/* a Coding: {"system":...,"code":...,"display":...} */

static void
vetting_json_coding(vetting_json_t *j, const char *system, const char *code,
    const char *display)
{
    vetting_json_open(j);

    vetting_json_lit(j, "system");
    vetting_json_lit(j, system);
    vetting_json_lit(j, "code");
    vetting_json_cstr(j, code);

    if (display != NULL) {
        vetting_json_lit(j, "display");
        vetting_json_lit(j, display);
    }

    vetting_json_close(j);
}


/* a CodeableConcept with one Coding */

static void
vetting_json_concept(vetting_json_t *j, const char *system,
    const char *code, const char *display)
{
    vetting_json_open(j);
    vetting_json_lit(j, "coding");
    vetting_json_array(j);
    vetting_json_coding(j, system, code, display);
    vetting_json_array_close(j);
    vetting_json_close(j);
}


/*
 * The length of the UTF-8 sequence at p, or of its longest invalid
 * start (at least one byte), which is replaced by one U+FFFD: the
 * "maximal subpart" practice of Unicode chapter 3.  Overlong forms,
 * surrogates and code points above U+10FFFF are invalid.
 */

static size_t
vetting_utf8_next(const unsigned char *p, size_t len, int *valid)
{
    size_t         i, need;
    unsigned char  c, lo, hi;

    c = p[0];
    *valid = 0;

    if (c < 0x80) {
        *valid = 1;
        return 1;
    }

    lo = 0x80;
    hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;

    } else if (c == 0xe0) {
        need = 2;
        lo = 0xa0;

    } else if (c == 0xed) {
        need = 2;
        hi = 0x9f;

    } else if (c >= 0xe1 && c <= 0xef) {
        need = 2;

    } else if (c == 0xf0) {
        need = 3;
        lo = 0x90;

    } else if (c >= 0xf1 && c <= 0xf3) {
        need = 3;

    } else if (c == 0xf4) {
        need = 3;
        hi = 0x8f;

    } else {
        return 1;
    }

    for (i = 1; i <= need; i++) {
        if (i >= len || p[i] < lo || p[i] > hi) {
            return i;
        }

        lo = 0x80;
        hi = 0xbf;
    }

    *valid = 1;

    return need + 1;
}


static int
vetting_utf8_valid(const unsigned char *p, size_t len)
{
    int     valid;
    size_t  i;

    i = 0;

    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }

        i += vetting_utf8_next(p + i, len - i, &valid);

        if (!valid) {
            return 0;
        }
    }

    return 1;
}


static size_t
vetting_utf8_size(const unsigned char *p, size_t len)
{
    int     valid;
    size_t  i, n, size;

    i = 0;
    size = 0;

    while (i < len) {
        n = vetting_utf8_next(p + i, len - i, &valid);
        size += valid ? n : 3;
        i += n;
    }

    return size;
}


static void
vetting_utf8_copy(unsigned char *dst, const unsigned char *p, size_t len)
{
    int     valid;
    size_t  i, n;

    i = 0;

    while (i < len) {
        n = vetting_utf8_next(p + i, len - i, &valid);

        if (valid) {
            memcpy(dst, p + i, n);
            dst += n;

        } else {
            *dst++ = 0xef;
            *dst++ = 0xbf;
            *dst++ = 0xbd;
        }

        i += n;
    }
}


size_t
vetting_ratelimit_policy(char *buf, size_t size, const char *name,
    uint64_t quota, uint64_t window)
{
    return vetting_ratelimit_item(buf, size, name, "q", quota, "w", window);
}


size_t
vetting_ratelimit_value(char *buf, size_t size, const char *name,
    uint64_t remaining, uint64_t reset)
{
    return vetting_ratelimit_item(buf, size, name, "r", remaining, "t",
                                  reset);
}


/*
 * One structured-field list item (RFC 9651): an sf-string followed by
 * two integer parameters.  An sf-string holds printable ASCII only, so
 * other bytes are left out, and " and \ are escaped.
 */

static size_t
vetting_ratelimit_item(char *buf, size_t size, const char *name,
    const char *k1, uint64_t v1, const char *k2, uint64_t v2)
{
    size_t         n;
    unsigned char  c;

    if (size == 0) {
        return 0;
    }

    n = vetting_sf_put(buf, size, 0, "\"", 1);

    for ( /* void */ ; name != NULL && *name != '\0'; name++) {
        c = (unsigned char) *name;

        if (c < 0x20 || c > 0x7e) {
            continue;
        }

        if (c == '"' || c == '\\') {
            n = vetting_sf_put(buf, size, n, "\\", 1);
        }

        n = vetting_sf_put(buf, size, n, name, 1);
    }

    n = vetting_sf_put(buf, size, n, "\";", 2);
    n = vetting_sf_put(buf, size, n, k1, strlen(k1));
    n = vetting_sf_put(buf, size, n, "=", 1);
    n = vetting_sf_number(buf, size, n, v1);
    n = vetting_sf_put(buf, size, n, ";", 1);
    n = vetting_sf_put(buf, size, n, k2, strlen(k2));
    n = vetting_sf_put(buf, size, n, "=", 1);
    n = vetting_sf_number(buf, size, n, v2);

    buf[n] = '\0';

    return n;
}


/* appends what fits before the last byte, kept for the NUL */

static size_t
vetting_sf_put(char *buf, size_t size, size_t n, const char *s, size_t len)
{
    if (len > size - 1 - n) {
        len = size - 1 - n;
    }

    memcpy(buf + n, s, len);

    return n + len;
}


static size_t
vetting_sf_number(char *buf, size_t size, size_t n, uint64_t v)
{
    char  *p, digits[20];

    p = digits + sizeof(digits);

    do {
        *--p = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    return vetting_sf_put(buf, size, n, p, digits + sizeof(digits) - p);
}


/*
 * Times before year 1 or after year 9999 are clamped to those years,
 * so that the result always is the 24 characters of a valid R4 instant.
 */

size_t
vetting_format_time(int64_t ms, char *buf)
{
    char       *p;
    time_t      t;
    int64_t     sec, frac;
    struct tm   tm;

    if (ms < VETTING_TIME_MIN) {
        ms = VETTING_TIME_MIN;

    } else if (ms > VETTING_TIME_MAX) {
        ms = VETTING_TIME_MAX;
    }

    /* floor division: -1 ms is 23:59:59.999 the day before the epoch */

    sec = ms / 1000;
    frac = ms % 1000;

    if (frac < 0) {
        frac += 1000;
        sec--;
    }

    t = (time_t) sec;

    if ((int64_t) t != sec || gmtime_r(&t, &tm) == NULL) {
        memset(&tm, 0, sizeof(struct tm));
        tm.tm_year = 70;
        tm.tm_mday = 1;
        frac = 0;
    }

    p = vetting_time_digits(buf, (unsigned) (tm.tm_year + 1900), 4);
    *p++ = '-';
    p = vetting_time_digits(p, (unsigned) (tm.tm_mon + 1), 2);
    *p++ = '-';
    p = vetting_time_digits(p, (unsigned) tm.tm_mday, 2);
    *p++ = 'T';
    p = vetting_time_digits(p, (unsigned) tm.tm_hour, 2);
    *p++ = ':';
    p = vetting_time_digits(p, (unsigned) tm.tm_min, 2);
    *p++ = ':';
    p = vetting_time_digits(p, (unsigned) tm.tm_sec, 2);
    *p++ = '.';
    p = vetting_time_digits(p, (unsigned) frac, 3);
    *p++ = 'Z';
    *p = '\0';

    return p - buf;
}


static char *
vetting_time_digits(char *p, unsigned v, size_t n)
{
    size_t  i;

    for (i = n; i > 0; i--) {
        p[i - 1] = (char) ('0' + v % 10);
        v /= 10;
    }

    return p + n;
}
