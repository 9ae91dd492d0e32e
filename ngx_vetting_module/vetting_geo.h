
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Country of a client address from a MaxMind DB file (libmaxminddb).
 * Both common layouts are read: MaxMind GeoIP2/GeoLite2 ("country" ->
 * "iso_code") and the flat "country_code" of freely licensed databases.
 */


#ifndef _VETTING_GEO_H_INCLUDED_
#define _VETTING_GEO_H_INCLUDED_


#include "vetting.h"

#include <sys/socket.h>


#define VETTING_GEO_PATH_MAX  8


typedef struct vetting_geo_s  vetting_geo_t;


typedef enum {
    VETTING_GEO_FOUND = 0,       /* country set */
    VETTING_GEO_UNKNOWN,         /* the database has no country for it */
    VETTING_GEO_ERROR            /* lookup failed: corrupt data */
} vetting_geo_rc_e;


/*
 * Opens the database at file.  The file is first copied into a private,
 * unlinked temporary file in tmpdir, and the copy is what libmaxminddb
 * maps: a database replaced in place later cannot change or crash the
 * mapping of running workers (the copy is reopened through
 * /proc/self/fd, so /proc must be mounted).  The database is then
 * checked: metadata present, a record size libmaxminddb knows, and a
 * lookup of a few addresses that completes without error.  The records
 * checked are those of the probe addresses (1.1.1.1, 8.8.8.8, and
 * 2001:4860::1 in an IPv6 database) that the database holds, and the
 * first record met walking down from the root of the search tree; each
 * must be a map.
 *
 * path lists the keys leading to the country code (for example
 * {"country", "iso_code", NULL}; at most VETTING_GEO_PATH_MAX keys, the
 * array is copied); NULL means: the GeoIP2 layout if a checked record
 * has "country" -> "iso_code", else "country_code" if one has that,
 * else the GeoIP2 layout (vetting_geo_country_path() tells which).
 *
 * Returns NULL and writes a reason (no secrets, names the file) into err
 * on failure.
 */
vetting_geo_t *vetting_geo_open(const char *file, const char *tmpdir,
    const char *const *path, char *err, size_t err_size);

void vetting_geo_close(vetting_geo_t *geo);

/*
 * Looks up a socket address (AF_INET or AF_INET6; an IPv4-mapped IPv6
 * address ::ffff:a.b.c.d is looked up as IPv4).  On VETTING_GEO_FOUND
 * country holds the upper-case code, NUL-terminated (cc must hold 4
 * bytes).  An IPv6 address against an IPv4-only database, and any
 * other family, is VETTING_GEO_UNKNOWN.
 */
vetting_geo_rc_e vetting_geo_lookup(vetting_geo_t *geo,
    const struct sockaddr *sa, char *cc);

/*
 * Rewrites an IPv4-mapped IPv6 address into its IPv4 form in place
 * (out must have room for a sockaddr_in6).  Returns 1 when it did.
 */
int vetting_geo_unmap(const struct sockaddr *sa, struct sockaddr *out);

/* the database's type, build time and country path, for the log */
const char *vetting_geo_type(vetting_geo_t *geo);
uint64_t vetting_geo_build_epoch(vetting_geo_t *geo);
const char *vetting_geo_country_path(vetting_geo_t *geo);


#endif /* _VETTING_GEO_H_INCLUDED_ */
