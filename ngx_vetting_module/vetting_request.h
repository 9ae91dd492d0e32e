
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Request-side parsing: credentials (RFC 6750 Bearer, RFC 7617 Basic as
 * used by RFC 6749 2.3.1, RFC 7523 client assertions), form bodies, and
 * the classification of FHIR RESTful interactions.
 */


#ifndef _VETTING_REQUEST_H_INCLUDED_
#define _VETTING_REQUEST_H_INCLUDED_


#include "vetting.h"


/* longest Authorization header value the module looks at */
#define VETTING_AUTH_MAX   16384

/* largest batch Bundle vetting_bundle_reads_only() looks at */
#define VETTING_BUNDLE_MAX  1048576


/*
 * Authorization: Bearer <b64token>.  The scheme is matched without
 * regard to case; exactly one space (or more) separates it from the
 * token, which must be RFC 6750 b64token syntax.
 *
 * Returns VETTING_OK and points *token into h; VETTING_DECLINED when
 * the scheme is not Bearer; VETTING_ERROR when the value is malformed
 * (empty token, bad characters, too long).
 */
int vetting_parse_bearer(const unsigned char *h, size_t len,
    vetting_str_t *token);

/*
 * Authorization: Basic base64(client_id ":" client_secret).  The client
 * id is base64-decoded, then form-url-decoded (RFC 6749 2.3.1), and
 * copied into out (NUL-terminated).  The secret is never copied.
 *
 * Returns VETTING_OK, VETTING_DECLINED (another scheme) or VETTING_ERROR
 * (bad base64, no colon, empty or too long client id, control bytes).
 */
int vetting_parse_basic_client(const unsigned char *h, size_t len,
    char *out, size_t size, size_t *out_len);

/*
 * Looks up one parameter of an application/x-www-form-urlencoded body or
 * of a query string, and decodes it ('+' and %XX) into out, which is
 * NUL-terminated.
 *
 * Returns VETTING_OK, VETTING_DECLINED when the name is absent, or
 * VETTING_ERROR when it occurs more than once (RFC 6749 3.1, 3.2: a
 * parameter must not be repeated), is badly encoded (a bad %XX escape,
 * or %00, which a C string cannot hold), or does not fit.  A name that
 * is itself badly encoded matches nothing.
 */
int vetting_form_get(const unsigned char *body, size_t len,
    const char *name, char *out, size_t size, size_t *out_len);

/*
 * Returns 1 when name occurs in the body or query, once or more and
 * whatever its value, and 0 when it does not.
 */
int vetting_form_has(const unsigned char *body, size_t len,
    const char *name);

/*
 * The client id in a private_key_jwt client assertion: the "iss" claim
 * of the JWT payload, which RFC 7523 3 and SMART require to equal "sub".
 * The signature is not checked here; the authorization server does that,
 * and the module only trusts the result once the server accepted it.
 *
 * Returns VETTING_OK, or VETTING_ERROR when the assertion is not a
 * three-part compact JWS, the payload is not a JSON object, "iss" is
 * missing or not a string, or "sub" is present and differs.  Also an
 * error: a payload over 8 KiB or nested over 64 levels, "iss" or "sub"
 * given twice, an "iss" that vetting_client_id_valid() refuses or that
 * does not fit.  out may be the buffer that holds jwt.
 */
int vetting_jwt_issuer(const unsigned char *jwt, size_t len,
    char *out, size_t size, size_t *out_len);


/* FHIR RESTful interactions (http://hl7.org/fhir/restful-interaction) */
typedef enum {
    VETTING_FHIR_UNKNOWN = 0,
    VETTING_FHIR_READ,
    VETTING_FHIR_VREAD,
    VETTING_FHIR_HISTORY,
    VETTING_FHIR_SEARCH_TYPE,
    VETTING_FHIR_SEARCH_SYSTEM,
    VETTING_FHIR_SEARCH_COMPARTMENT,
    VETTING_FHIR_CAPABILITIES,
    VETTING_FHIR_OPERATION,
    VETTING_FHIR_CREATE,
    VETTING_FHIR_UPDATE,
    VETTING_FHIR_PATCH,
    VETTING_FHIR_DELETE,
    VETTING_FHIR_BATCH,
    VETTING_FHIR_OPTIONS
} vetting_fhir_interaction_e;


typedef struct {
    vetting_fhir_interaction_e   interaction;

    /* FHIR audit action code: 'C', 'R', 'U', 'D' or 'E' */
    char                         action;

    /* the request changes data, or could, as far as the gateway knows */
    unsigned                     write:1;

    /* the method is not one the API accepts at all (WebDAV, unknown) */
    unsigned                     bad_method:1;

    /* a POST whose body the caller must inspect (batch at the base) */
    unsigned                     needs_body:1;

    /* the resource type and id named by the path, when there is one */
    vetting_str_t                type;
    vetting_str_t                id;

    /* the operation name without '$', for VETTING_FHIR_OPERATION */
    vetting_str_t                operation;
} vetting_fhir_request_t;


/*
 * Classifies one FHIR request.
 *
 *   method     the request method as sent ("GET", "POST", ...);
 *   path       the decoded path relative to the FHIR base, starting
 *              after it ("" or "/" for the base, "/Patient/123", ...);
 *   query      the raw query string, without '?' (may be empty);
 *   reads      the operations ops declared as reads when POSTed, as a
 *              NUL-separated, double-NUL-terminated list of names
 *              without '$' (NULL for none).
 *
 * GET, HEAD and OPTIONS are reads.  A POST is a read when the last path
 * segment is "_search" ([base]/_search, [base]/[type]/_search, and
 * compartment searches), when it calls an operation listed in reads,
 * or when it is a paging continuation: a POST to the base whose query
 * holds "_getpages".  Any other POST to the base is a batch or a
 * transaction: write, with needs_body set so that the caller may look
 * at the Bundle (or at a form body holding "_getpages").  Every other
 * POST is a create or an unlisted operation: write.  PUT, PATCH and
 * DELETE are writes.  Any other method is bad_method (and write).
 *
 * Methods are compared with regard to case.  A path that is none of the
 * FHIR shapes (an empty segment, a type not spelled [A-Z][A-Za-z0-9]*,
 * an id that is not a FHIR id or is "." or "..", more than four
 * segments, "_search" after an instance) gives VETTING_FHIR_UNKNOWN:
 * a read with action 'R' for GET and HEAD, a create for POST.  OPTIONS
 * and unknown methods have action 'E'.
 */
void vetting_fhir_classify(const char *method, size_t method_len,
    const unsigned char *path, size_t path_len,
    const unsigned char *query, size_t query_len, const char *reads,
    vetting_fhir_request_t *req);

/*
 * Checks a batch Bundle (JSON) whose every entry must be a read: returns
 * VETTING_OK when the body is a Bundle of type "batch" whose entries all
 * have request.method GET or HEAD, VETTING_DECLINED when it is a valid
 * Bundle but holds a write or is a "transaction", and VETTING_ERROR when
 * it is not a Bundle at all or is malformed, too deep or too large.
 * Malformed includes: no "type", an entry without request.method, more
 * than max_entries entries, and a repeated resourceType, type, entry,
 * request or method member (two readings of the JSON could differ).
 */
int vetting_bundle_reads_only(const unsigned char *body, size_t len,
    size_t max_entries);

/*
 * Copies a query string into out with the values of parameters that may
 * carry secrets replaced by "redacted": access_token, refresh_token,
 * id_token, code, code_verifier, client_secret, client_assertion,
 * password, token, jwt, assertion, id_token_hint, login_hint (member
 * data), request (a request object), and any name ending in "_token" or
 * "secret".  Output is truncated to size - 1 bytes and NUL-terminated.
 * Returns the output length.
 */
size_t vetting_redact_query(const unsigned char *q, size_t len,
    char *out, size_t size);

/*
 * Method override hints (X-HTTP-Method-Override, X-HTTP-Method,
 * X-Method-Override headers; _method parameter): returns 1 when name is
 * one of the header names, compared without regard to case.
 */
int vetting_is_override_header(const unsigned char *name, size_t len);

/* returns 1 when s is a valid FHIR id: [A-Za-z0-9\-\.]{1,64} */
int vetting_fhir_id_valid(const unsigned char *s, size_t len);

/*
 * A client id the module is willing to keep: 1 to VETTING_APP_MAX
 * printable ASCII characters (0x21-0x7e) other than quotes and
 * backslash.  Anything else is refused as a malformed client id.
 */
int vetting_client_id_valid(const unsigned char *s, size_t len);


#endif /* _VETTING_REQUEST_H_INCLUDED_ */
