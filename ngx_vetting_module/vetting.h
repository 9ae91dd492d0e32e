
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Definitions shared by the pure C parts of the module: the parsers,
 * the rule arithmetic and the event formatting.  Nothing here includes
 * an nginx header, so these parts build and run in unit tests and fuzz
 * targets without nginx.
 */


#ifndef _VETTING_H_INCLUDED_
#define _VETTING_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define VETTING_OK          0
#define VETTING_ERROR      -1
#define VETTING_DECLINED   -5


/* SHA-256 digest of a token; the only form in which a token is kept */
#define VETTING_DIGEST_LEN  32

/* a FHIR logical id is at most 64 characters (R4 datatypes, id) */
#define VETTING_MEMBER_MAX  64

/* longest client id, tenant and scope the module keeps */
#define VETTING_APP_MAX     128
#define VETTING_TENANT_MAX  64
#define VETTING_SCOPE_MAX   512

/* ten years: a longer token lifetime is treated as invalid */
#define VETTING_LIFETIME_MAX  315360000


typedef struct {
    const unsigned char  *data;
    size_t                len;
} vetting_str_t;


#endif /* _VETTING_H_INCLUDED_ */
