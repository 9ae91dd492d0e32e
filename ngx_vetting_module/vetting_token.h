
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Streaming parser for OAuth 2.0 / SMART token responses (RFC 6749 5.1).
 * The response body is fed in chunks of any size, split anywhere; the
 * parser keeps only SHA-256 digests of the tokens it sees, never the
 * tokens themselves.
 */


#ifndef _VETTING_TOKEN_H_INCLUDED_
#define _VETTING_TOKEN_H_INCLUDED_


#include "vetting.h"


/*
 * Only members of the top-level object count, and a member given twice
 * counts as given last.  A value of the wrong type is ignored for
 * access_token, refresh_token and scope (an empty token too), and is
 * flagged for patient, token_type and expires_in, like any other bad
 * value.  expires_in is a JSON number or a string of digits only.
 */
typedef struct {
    unsigned char   access_digest[VETTING_DIGEST_LEN];
    unsigned char   refresh_digest[VETTING_DIGEST_LEN];

    /* "patient" launch context: the member id, NUL-terminated */
    char            member[VETTING_MEMBER_MAX + 1];
    size_t          member_len;

    /* "scope", NUL-terminated, truncated flag set when longer */
    char            scope[VETTING_SCOPE_MAX + 1];
    size_t          scope_len;

    /* seconds, only meaningful when has_lifetime is set */
    int64_t         expires_in;

    unsigned        has_access:1;
    unsigned        has_refresh:1;
    unsigned        has_member:1;
    unsigned        has_scope:1;
    unsigned        scope_truncated:1;
    unsigned        has_lifetime:1;

    /* "expires_in" was present but not a usable positive lifetime */
    unsigned        bad_lifetime:1;

    /* "token_type" was present and is not "Bearer" (case-insensitive) */
    unsigned        not_bearer:1;

    /* "patient" was present but not a valid FHIR id */
    unsigned        bad_member:1;
} vetting_token_info_t;


typedef struct vetting_token_parser_s  vetting_token_parser_t;


/*
 * max_bytes: total body bytes accepted before the parser gives up;
 * max_depth: deepest nesting of objects and arrays accepted, the top
 * object counting as 1 (so 0 refuses everything).
 * Returns NULL when memory is short.
 */
vetting_token_parser_t *vetting_token_parser_create(size_t max_bytes,
    unsigned max_depth);

/*
 * Returns VETTING_OK while the input is acceptable so far, VETTING_ERROR
 * once it is not (not JSON, not an object, too deep, too large); further
 * calls after an error keep returning VETTING_ERROR.
 */
int vetting_token_parser_feed(vetting_token_parser_t *p,
    const unsigned char *buf, size_t len);

/*
 * Ends the input.  Returns VETTING_OK and fills info when the whole body
 * was one complete JSON object; VETTING_ERROR otherwise (info is then
 * zeroed).
 */
int vetting_token_parser_finish(vetting_token_parser_t *p,
    vetting_token_info_t *info);

/*
 * A short, fixed description of the last error, fit for a log line: it
 * never quotes the input.
 */
const char *vetting_token_parser_error(vetting_token_parser_t *p);

void vetting_token_parser_free(vetting_token_parser_t *p);

/*
 * Parses the text of a JSON number (or a string of digits) as a token
 * lifetime in seconds.  Accepts any spelling of an integral value in
 * [1, VETTING_LIFETIME_MAX]: "3600", "3600.0", "3.6e3", "36e2".
 * Refuses zero, negatives, fractions, overflow, and anything else.
 */
int vetting_parse_lifetime(const unsigned char *p, size_t len,
    int64_t *seconds);

/*
 * SHA-256 of data; out must hold VETTING_DIGEST_LEN bytes.  Returns
 * VETTING_OK, or VETTING_ERROR (out zeroed) when libcrypto fails, which
 * it only does when memory is short: never use a failed digest as a key.
 * It keeps one hashing context for the process: not for use by several
 * threads at once.
 */
int vetting_digest(const unsigned char *data, size_t len,
    unsigned char *out);

/* lower-case hex of a digest; out must hold 2 * VETTING_DIGEST_LEN bytes */
void vetting_digest_hex(const unsigned char *digest, unsigned char *out);


#endif /* _VETTING_TOKEN_H_INCLUDED_ */
