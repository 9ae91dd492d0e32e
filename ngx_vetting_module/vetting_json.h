
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * JSON the module writes, all of it through yajl's generator: FHIR R4
 * AuditEvent (one per refusal and per block), FHIR R4 OperationOutcome
 * (refusals on the FHIR API), RFC 6749 5.2 error objects (refusals on
 * the OAuth endpoints), and the IETF RateLimit header field values.
 *
 * Every string taken from a request is written as valid UTF-8: invalid
 * bytes are replaced with U+FFFD, so a hostile path cannot break a line.
 */


#ifndef _VETTING_JSON_H_INCLUDED_
#define _VETTING_JSON_H_INCLUDED_


#include "vetting.h"


typedef enum {
    VETTING_AUDIT_REFUSAL = 0,   /* a request was refused, outcome 4 */
    VETTING_AUDIT_DRY_RUN,       /* a log-only rule matched, outcome 0 */
    VETTING_AUDIT_BLOCK          /* an app was suspended, outcome 0 */
} vetting_audit_kind_e;


typedef struct {
    const char                  *type;     /* e.g. "count", "threshold" */
    vetting_str_t                value;
} vetting_audit_detail_t;


typedef struct {
    vetting_audit_kind_e         kind;

    /* unique event id, written as AuditEvent.id */
    vetting_str_t                id;

    /* milliseconds since the epoch, written as "recorded" in UTC */
    int64_t                      time_ms;

    /* reason code from the vetting-reason code system: "write",
     * "rate", "country", "blocked", "revoked", "members", ... */
    const char                  *reason;

    /* human text for outcomeDesc; must carry no secret or member data */
    vetting_str_t                description;

    /* FHIR action code C, R, U, D or E; 0 for none */
    char                         action;

    /* restful-interaction code ("create", "search-type", ...) or NULL */
    const char                  *interaction;

    vetting_str_t                app;        /* client id, may be empty */
    vetting_str_t                member;     /* member id, may be empty */
    vetting_str_t                address;    /* client address */
    vetting_str_t                tenant;     /* may be empty */
    vetting_str_t                gateway;    /* source.site */
    vetting_str_t                country;    /* may be empty */

    /* the request, already stripped of secret query values */
    vetting_str_t                method;
    vetting_str_t                uri;

    /* HTTP status sent, 0 when none (block events) */
    unsigned                     status;

    const vetting_audit_detail_t *details;
    size_t                       ndetails;
} vetting_audit_event_t;


/*
 * Writes ev as one compact JSON object (no newline, no NUL) into buf.
 * Returns VETTING_OK and the length, or VETTING_ERROR when it does not
 * fit, kind is unknown, or the generator fails.
 */
int vetting_audit_format(const vetting_audit_event_t *ev,
    unsigned char *buf, size_t size, size_t *len);

/*
 * An OperationOutcome with one issue.  severity: "error" or "fatal";
 * code: an IssueType code ("forbidden", "throttled", "security",
 * "not-supported", "login", ...); details: a code from
 * http://terminology.hl7.org/CodeSystem/operation-outcome or NULL;
 * diagnostics: human text or NULL.
 */
int vetting_outcome_format(const char *severity, const char *code,
    const char *details, const char *diagnostics, unsigned char *buf,
    size_t size, size_t *len);

/* {"error":"...","error_description":"..."}; description may be NULL */
int vetting_oauth_error_format(const char *error, const char *description,
    unsigned char *buf, size_t size, size_t *len);

/*
 * RateLimit-Policy and RateLimit field values (draft-ietf-httpapi-
 * ratelimit-headers, list-of-items form):
 *   "<name>";q=<quota>;w=<window>      "<name>";r=<remaining>;t=<reset>
 * The name is written as a structured-field string.  Return the length
 * written, NUL-terminated, truncated to size - 1.
 */
size_t vetting_ratelimit_policy(char *buf, size_t size, const char *name,
    uint64_t quota, uint64_t window);
size_t vetting_ratelimit_value(char *buf, size_t size, const char *name,
    uint64_t remaining, uint64_t reset);

/*
 * "2025-03-01T14:22:05.123Z", UTC; buf must hold 25 bytes.  Times
 * outside the years 0001 to 9999 are clamped to them.
 */
size_t vetting_format_time(int64_t ms, char *buf);


#endif /* _VETTING_JSON_H_INCLUDED_ */
