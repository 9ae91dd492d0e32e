
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * libmaxminddb 1.7.1 (Debian 12) has none of the later hardening against
 * crafted databases, so the database is trusted input: the checks in
 * vetting_geo_open() catch accidents (a wrong, truncated or damaged
 * file), not an attacker who can write the file.
 */


#include "vetting_geo.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <maxminddb.h>


/* room for the keys of a country path, each NUL-terminated */
#define VETTING_GEO_KEYS_LEN     256

/* the name of the temporary copy, and the buffer that copies it */
#define VETTING_GEO_NAME_LEN     4096
#define VETTING_GEO_COPY_LEN     65536

/* libmaxminddb 1.7.1 computes file offsets in 32 bits */
#define VETTING_GEO_FILE_MAX     0xffffffffLL

/* the separator between the search tree and the data section */
#define VETTING_GEO_SEPARATOR    16

/* the records checked: at most 3 of probes, and the first record */
#define VETTING_GEO_SAMPLES      4

/* a status beside libmaxminddb's own, which are not negative */
#define VETTING_GEO_NOT_MAP      (-1)

#define vetting_geo_letter(c)                                                \
    (((c) | 0x20) >= 'a' && ((c) | 0x20) <= 'z')


struct vetting_geo_s {
    MMDB_s                mmdb;
    const char           *path[VETTING_GEO_PATH_MAX + 1];
    char                  keys[VETTING_GEO_KEYS_LEN];
    char                  name[VETTING_GEO_KEYS_LEN];
};


typedef struct {
    const char           *text;
    int                   family;
} vetting_geo_probe_t;


static int vetting_geo_set_path(vetting_geo_t *geo, const char *const *path);
static int vetting_geo_copy(const char *file, const char *tmpdir, char *err,
    size_t err_size);
static int vetting_geo_check(vetting_geo_t *geo, const char *file,
    const char *const *path, char *err, size_t err_size);
static int vetting_geo_probe(vetting_geo_t *geo, const vetting_geo_probe_t *p,
    MMDB_lookup_result_s *res);
static int vetting_geo_first_record(MMDB_s *mmdb, MMDB_entry_s *entry);
static int vetting_geo_check_record(vetting_geo_t *geo, MMDB_entry_s *entry,
    const char *const *path, unsigned *found);
static int vetting_geo_find(vetting_geo_t *geo, const struct sockaddr *sa,
    MMDB_lookup_result_s *res);
static vetting_geo_rc_e vetting_geo_value(MMDB_entry_s *entry,
    const char *const *path, MMDB_entry_data_s *data, int *status);
static const char *vetting_geo_strerror(int rc);
static void vetting_geo_error(char *err, size_t err_size, const char *file,
    const char *fmt, ...);


static const char *const  vetting_geo_geoip2[] = {
    "country", "iso_code", NULL
};

static const char *const  vetting_geo_flat[] = {
    "country_code", NULL
};

/*
 * addresses that a country database normally holds; a database that
 * lacks them (as test databases do) is checked through its first record
 */
static const vetting_geo_probe_t  vetting_geo_probes[] = {
    { "1.1.1.1", AF_INET },
    { "8.8.8.8", AF_INET },
    { "2001:4860::1", AF_INET6 },
    { NULL, 0 }
};


vetting_geo_t *
vetting_geo_open(const char *file, const char *tmpdir,
    const char *const *path, char *err, size_t err_size)
{
    int             fd, rc, saved;
    char            proc[32];
    vetting_geo_t  *geo;

    geo = calloc(1, sizeof(vetting_geo_t));
    if (geo == NULL) {
        vetting_geo_error(err, err_size, file, "out of memory");
        return NULL;
    }

    if (path != NULL && vetting_geo_set_path(geo, path) != VETTING_OK) {
        vetting_geo_error(err, err_size, file,
                          "the country path is empty, longer than %d keys "
                          "or %d bytes, or has an empty key",
                          VETTING_GEO_PATH_MAX, VETTING_GEO_KEYS_LEN - 1);
        free(geo);
        return NULL;
    }

    /*
     * libmaxminddb maps the file it opens.  A database replaced in place
     * on disk (cp over it, a download into the same inode) would change
     * the pages under running workers, or cut the mapping short and kill
     * them with SIGBUS at their next lookup.  So the mapping is made of
     * a private copy, unlinked right after its creation: no one else can
     * reach it, it leaves no file behind, and its space is freed when
     * the last process that maps it unmaps it or exits.  The copy is
     * opened again through /proc/self/fd, the only name it still has.
     */

    fd = vetting_geo_copy(file, tmpdir, err, err_size);
    if (fd == -1) {
        free(geo);
        return NULL;
    }

    (void) snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);

    rc = MMDB_open(proc, MMDB_MODE_MMAP, &geo->mmdb);
    saved = errno;

    (void) close(fd);

    if (rc != MMDB_SUCCESS) {
        if (rc == MMDB_FILE_OPEN_ERROR || rc == MMDB_IO_ERROR) {
            vetting_geo_error(err, err_size, file,
                              "MMDB_open() of the copy as \"%s\" failed: "
                              "%s (%d: %s)", proc, MMDB_strerror(rc),
                              saved, strerror(saved));

        } else {
            vetting_geo_error(err, err_size, file, "MMDB_open() failed: %s",
                              MMDB_strerror(rc));
        }

        free(geo);
        return NULL;
    }

    if (vetting_geo_check(geo, file, path, err, err_size) != VETTING_OK) {
        MMDB_close(&geo->mmdb);
        free(geo);
        return NULL;
    }

    return geo;
}


void
vetting_geo_close(vetting_geo_t *geo)
{
    if (geo == NULL) {
        return;
    }

    MMDB_close(&geo->mmdb);
    free(geo);
}


vetting_geo_rc_e
vetting_geo_lookup(vetting_geo_t *geo, const struct sockaddr *sa, char *cc)
{
    int                    rc;
    const char            *s;
    vetting_geo_rc_e       grc;
    MMDB_entry_data_s      data;
    MMDB_lookup_result_s   res;

    union {
        struct sockaddr        sa;
        struct sockaddr_in     sin;
        struct sockaddr_in6    sin6;
    } addr;

    /*
     * libmaxminddb 1.7.1 reads any family other than AF_INET6 as an
     * AF_INET address, past the end of a shorter sockaddr
     */

    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) {
        return VETTING_GEO_UNKNOWN;
    }

    /*
     * ::ffff:a.b.c.d is found in an IPv6 database only where the writer
     * aliased it; unmapped, it is found in every database.  6to4, Teredo
     * and NAT64 addresses stay IPv6: they get what the database says.
     */

    if (vetting_geo_unmap(sa, &addr.sa)) {
        sa = &addr.sa;
    }

    if (sa->sa_family == AF_INET6 && geo->mmdb.metadata.ip_version != 6) {
        return VETTING_GEO_UNKNOWN;
    }

    rc = vetting_geo_find(geo, sa, &res);

    if (rc == MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR) {
        return VETTING_GEO_UNKNOWN;
    }

    if (rc != MMDB_SUCCESS) {
        return VETTING_GEO_ERROR;
    }

    if (!res.found_entry) {
        return VETTING_GEO_UNKNOWN;
    }

    grc = vetting_geo_value(&res.entry, geo->path, &data, &rc);
    if (grc != VETTING_GEO_FOUND) {
        return grc;
    }

    if (data.type != MMDB_DATA_TYPE_UTF8_STRING || data.data_size != 2) {
        return VETTING_GEO_UNKNOWN;
    }

    s = data.utf8_string;

    if (!vetting_geo_letter(s[0]) || !vetting_geo_letter(s[1])) {
        return VETTING_GEO_UNKNOWN;
    }

    cc[0] = (char) (s[0] & ~0x20);
    cc[1] = (char) (s[1] & ~0x20);
    cc[2] = '\0';

    return VETTING_GEO_FOUND;
}


int
vetting_geo_unmap(const struct sockaddr *sa, struct sockaddr *out)
{
    in_port_t                   port;
    unsigned char               a[4];
    struct sockaddr_in         *sin;
    const struct sockaddr_in6  *sin6;

    if (sa->sa_family != AF_INET6) {
        return 0;
    }

    sin6 = (const struct sockaddr_in6 *) sa;

    if (!IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
        return 0;
    }

    /* read everything first: out may be sa itself */

    memcpy(a, &sin6->sin6_addr.s6_addr[12], 4);
    port = sin6->sin6_port;

    sin = (struct sockaddr_in *) out;

    memset(sin, 0, sizeof(struct sockaddr_in));
    sin->sin_family = AF_INET;
    sin->sin_port = port;
    memcpy(&sin->sin_addr.s_addr, a, 4);

    return 1;
}


const char *
vetting_geo_type(vetting_geo_t *geo)
{
    return geo->mmdb.metadata.database_type;
}


uint64_t
vetting_geo_build_epoch(vetting_geo_t *geo)
{
    return geo->mmdb.metadata.build_epoch;
}


const char *
vetting_geo_country_path(vetting_geo_t *geo)
{
    return geo->name;
}


static int
vetting_geo_set_path(vetting_geo_t *geo, const char *const *path)
{
    char    *k, *n;
    size_t   i, len, used;

    used = 0;
    n = geo->name;

    for (i = 0; path[i] != NULL; i++) {

        len = strlen(path[i]);

        if (i == VETTING_GEO_PATH_MAX
            || len == 0
            || len >= VETTING_GEO_KEYS_LEN - used)
        {
            return VETTING_ERROR;
        }

        k = &geo->keys[used];
        memcpy(k, path[i], len + 1);
        geo->path[i] = k;
        used += len + 1;

        /* the dotted name is as long as the keys with their NULs */

        if (i > 0) {
            *n++ = '.';
        }

        memcpy(n, path[i], len + 1);
        n += len;
    }

    if (i == 0) {
        return VETTING_ERROR;
    }

    geo->path[i] = NULL;

    return VETTING_OK;
}


static int
vetting_geo_copy(const char *file, const char *tmpdir, char *err,
    size_t err_size)
{
    int            fd, tmp, n;
    char           name[VETTING_GEO_NAME_LEN];
    char           buf[VETTING_GEO_COPY_LEN];
    off_t          left;
    size_t         want;
    ssize_t        got, put, done;
    const char    *what;
    struct stat    st;

    /* O_NONBLOCK: a fifo in place of the file must not hang the open */

    fd = open(file, O_RDONLY|O_NONBLOCK|O_CLOEXEC);
    if (fd == -1) {
        vetting_geo_error(err, err_size, file, "open() failed (%d: %s)",
                          errno, strerror(errno));
        return -1;
    }

    if (fstat(fd, &st) == -1) {
        vetting_geo_error(err, err_size, file, "fstat() failed (%d: %s)",
                          errno, strerror(errno));
        (void) close(fd);
        return -1;
    }

    what = NULL;

    if (!S_ISREG(st.st_mode)) {
        what = "is not a regular file";

    } else if (st.st_size == 0) {
        what = "is empty";

    } else if (st.st_size > VETTING_GEO_FILE_MAX) {
        what = "is larger than libmaxminddb 1.7.1 can read (4 GiB)";
    }

    if (what != NULL) {
        vetting_geo_error(err, err_size, file, "the file %s", what);
        (void) close(fd);
        return -1;
    }

    n = snprintf(name, sizeof(name), "%s/vetting-geo-XXXXXX", tmpdir);
    if (n < 0 || (size_t) n >= sizeof(name)) {
        vetting_geo_error(err, err_size, file,
                          "the temporary directory name is too long");
        (void) close(fd);
        return -1;
    }

    tmp = mkstemp(name);
    if (tmp == -1) {
        vetting_geo_error(err, err_size, file,
                          "mkstemp() in \"%s\" failed (%d: %s)",
                          tmpdir, errno, strerror(errno));
        (void) close(fd);
        return -1;
    }

    if (unlink(name) == -1) {
        vetting_geo_error(err, err_size, file,
                          "unlink() \"%s\" failed (%d: %s)",
                          name, errno, strerror(errno));
        (void) close(tmp);
        (void) close(fd);
        return -1;
    }

    /* copy exactly the size seen: a file that keeps growing ends too */

    for (left = st.st_size; left > 0; left -= got) {

        want = left < (off_t) sizeof(buf) ? (size_t) left : sizeof(buf);

        got = read(fd, buf, want);

        if (got == -1 && errno == EINTR) {
            got = 0;
            continue;
        }

        if (got <= 0) {
            if (got == 0) {
                vetting_geo_error(err, err_size, file,
                                  "the file shrank while it was copied");

            } else {
                vetting_geo_error(err, err_size, file,
                                  "read() failed (%d: %s)",
                                  errno, strerror(errno));
            }

            goto failed;
        }

        for (done = 0; done < got; done += put) {

            put = write(tmp, buf + done, (size_t) (got - done));

            if (put == -1 && errno == EINTR) {
                put = 0;
                continue;
            }

            if (put <= 0) {
                if (put == 0) {
                    errno = ENOSPC;
                }

                vetting_geo_error(err, err_size, file,
                                  "write() to the copy in \"%s\" failed "
                                  "(%d: %s)", tmpdir, errno, strerror(errno));
                goto failed;
            }
        }
    }

    (void) close(fd);

    return tmp;

failed:

    (void) close(tmp);
    (void) close(fd);

    return -1;
}


static int
vetting_geo_check(vetting_geo_t *geo, const char *file,
    const char *const *path, char *err, size_t err_size)
{
    int                    rc;
    size_t                 i, n;
    unsigned               found;
    const char            *what[VETTING_GEO_SAMPLES];
    MMDB_entry_s           sample[VETTING_GEO_SAMPLES];
    MMDB_metadata_s       *meta;
    MMDB_lookup_result_s   res;

    meta = &geo->mmdb.metadata;

    if (meta->ip_version != 4 && meta->ip_version != 6) {
        vetting_geo_error(err, err_size, file, "unknown IP version %u",
                          (unsigned) meta->ip_version);
        return VETTING_ERROR;
    }

    if (meta->record_size != 24
        && meta->record_size != 28
        && meta->record_size != 32)
    {
        vetting_geo_error(err, err_size, file, "unknown record size %u",
                          (unsigned) meta->record_size);
        return VETTING_ERROR;
    }

    if (meta->node_count == 0) {
        vetting_geo_error(err, err_size, file, "the search tree is empty");
        return VETTING_ERROR;
    }

    /* the records to check: those of the probe addresses, and the first */

    n = 0;

    for (i = 0; vetting_geo_probes[i].text != NULL; i++) {

        rc = vetting_geo_probe(geo, &vetting_geo_probes[i], &res);

        if (rc != MMDB_SUCCESS) {
            vetting_geo_error(err, err_size, file,
                              "probe lookup of %s failed: %s",
                              vetting_geo_probes[i].text, MMDB_strerror(rc));
            return VETTING_ERROR;
        }

        if (res.found_entry && n < VETTING_GEO_SAMPLES - 1) {
            what[n] = vetting_geo_probes[i].text;
            sample[n++] = res.entry;
        }
    }

    rc = vetting_geo_first_record(&geo->mmdb, &sample[n]);

    if (rc != MMDB_SUCCESS) {
        vetting_geo_error(err, err_size, file,
                          "walk to the first record failed: %s",
                          MMDB_strerror(rc));
        return VETTING_ERROR;
    }

    if (sample[n].mmdb != NULL) {
        what[n++] = "the first record";
    }

    /*
     * found collects, per sample, bit 0 for a GeoIP2 country and bit 1
     * for a flat one; every record must be a map that the configured
     * or candidate paths can be read from without a data error
     */

    found = 0;

    for (i = 0; i < n; i++) {
        rc = vetting_geo_check_record(geo, &sample[i], path, &found);

        if (rc != MMDB_SUCCESS) {
            vetting_geo_error(err, err_size, file,
                              "probe lookup of %s failed: %s", what[i],
                              vetting_geo_strerror(rc));
            return VETTING_ERROR;
        }
    }

    if (path != NULL) {
        return VETTING_OK;
    }

    /*
     * no sampled record with a flat country code means GeoIP2, also when
     * no sampled record has a country at all (a database of networks
     * far from the probes, or of records without countries): the
     * answers are then unknown until the path is configured
     */

    if ((found & 1) || !(found & 2)) {
        path = vetting_geo_geoip2;

    } else {
        path = vetting_geo_flat;
    }

    return vetting_geo_set_path(geo, path);
}


static int
vetting_geo_probe(vetting_geo_t *geo, const vetting_geo_probe_t *p,
    MMDB_lookup_result_s *res)
{
    int    rc;

    union {
        struct sockaddr        sa;
        struct sockaddr_in     sin;
        struct sockaddr_in6    sin6;
    } addr;

    memset(&addr, 0, sizeof(addr));
    memset(res, 0, sizeof(MMDB_lookup_result_s));

    if (p->family == AF_INET6) {
        if (geo->mmdb.metadata.ip_version != 6) {
            return MMDB_SUCCESS;
        }

        addr.sin6.sin6_family = AF_INET6;
        rc = inet_pton(AF_INET6, p->text, &addr.sin6.sin6_addr);

    } else {
        addr.sin.sin_family = AF_INET;
        rc = inet_pton(AF_INET, p->text, &addr.sin.sin_addr);
    }

    if (rc != 1) {
        return MMDB_INVALID_LOOKUP_PATH_ERROR;
    }

    *res = MMDB_lookup_sockaddr(&geo->mmdb, &addr.sa, &rc);

    return rc;
}


/*
 * Finds a data record by walking down from the root, taking a data
 * record as soon as a node has one and otherwise the left branch: at
 * most one node per address bit.  entry->mmdb stays NULL when the walk
 * ends at empty records.
 */

static int
vetting_geo_first_record(MMDB_s *mmdb, MMDB_entry_s *entry)
{
    int                 rc, side;
    uint8_t             type;
    uint32_t            node, bits, count;
    uint64_t            record;
    MMDB_search_node_s  sn;

    memset(entry, 0, sizeof(MMDB_entry_s));

    count = mmdb->metadata.node_count;
    bits = mmdb->metadata.ip_version == 6 ? 128 : 32;
    node = 0;

    while (bits--) {

        rc = MMDB_read_node(mmdb, node, &sn);
        if (rc != MMDB_SUCCESS) {
            return rc;
        }

        for (side = 0; side < 2; side++) {
            type = side ? sn.right_record_type : sn.left_record_type;
            record = side ? sn.right_record : sn.left_record;

            if (type == MMDB_RECORD_TYPE_INVALID) {
                return MMDB_CORRUPT_SEARCH_TREE_ERROR;
            }

            if (type != MMDB_RECORD_TYPE_DATA) {
                continue;
            }

            /* 1.7.1 takes records pointing into the separator as data */

            if (record < (uint64_t) count + VETTING_GEO_SEPARATOR) {
                return MMDB_CORRUPT_SEARCH_TREE_ERROR;
            }

            *entry = side ? sn.right_record_entry : sn.left_record_entry;

            return MMDB_SUCCESS;
        }

        if (sn.left_record_type == MMDB_RECORD_TYPE_SEARCH_NODE) {
            node = (uint32_t) sn.left_record;

        } else if (sn.right_record_type == MMDB_RECORD_TYPE_SEARCH_NODE) {
            node = (uint32_t) sn.right_record;

        } else {
            return MMDB_SUCCESS;
        }
    }

    return MMDB_SUCCESS;
}


/*
 * Returns VETTING_GEO_NOT_MAP for a record that is not a map, and ORs
 * into found: 1 if the record has a GeoIP2 country, 2 if a flat one.
 */

static int
vetting_geo_check_record(vetting_geo_t *geo, MMDB_entry_s *entry,
    const char *const *path, unsigned *found)
{
    int                  rc;
    unsigned             i;
    const char          *top[1];
    vetting_geo_rc_e     grc;
    MMDB_entry_data_s    data;
    const char *const   *layout[2];

    top[0] = NULL;

    rc = MMDB_aget_value(entry, &data, top);
    if (rc != MMDB_SUCCESS) {
        return rc;
    }

    if (data.type != MMDB_DATA_TYPE_MAP) {
        return VETTING_GEO_NOT_MAP;
    }

    if (path != NULL) {
        grc = vetting_geo_value(entry, geo->path, &data, &rc);
        if (grc == VETTING_GEO_ERROR) {
            return rc;
        }
    }

    layout[0] = vetting_geo_geoip2;
    layout[1] = vetting_geo_flat;

    for (i = 0; i < 2; i++) {
        grc = vetting_geo_value(entry, layout[i], &data, &rc);

        if (grc == VETTING_GEO_ERROR) {
            return rc;
        }

        if (grc == VETTING_GEO_FOUND) {
            *found |= 1u << i;
        }
    }

    return MMDB_SUCCESS;
}


/*
 * libmaxminddb looks an AF_INET address up in an IPv6 database as
 * ::a.b.c.d, where the MaxMind writers keep IPv4 data.  Other writers
 * may keep it only under ::ffff:0:0/96, so an address not found there
 * is looked up once more in its mapped form.
 */

static int
vetting_geo_find(vetting_geo_t *geo, const struct sockaddr *sa,
    MMDB_lookup_result_s *res)
{
    int                   rc;
    struct sockaddr_in6   sin6;

    *res = MMDB_lookup_sockaddr(&geo->mmdb, sa, &rc);

    if (rc != MMDB_SUCCESS
        || res->found_entry
        || sa->sa_family != AF_INET
        || geo->mmdb.metadata.ip_version != 6)
    {
        return rc;
    }

    memset(&sin6, 0, sizeof(struct sockaddr_in6));
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr.s6_addr[10] = 0xff;
    sin6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&sin6.sin6_addr.s6_addr[12],
           &((const struct sockaddr_in *) sa)->sin_addr.s_addr, 4);

    *res = MMDB_lookup_sockaddr(&geo->mmdb, (struct sockaddr *) &sin6, &rc);

    return rc;
}


/*
 * In 1.7.1 a missing map key is MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR,
 * as is a path that goes on below a string; both mean "no such value".
 */

static vetting_geo_rc_e
vetting_geo_value(MMDB_entry_s *entry, const char *const *path,
    MMDB_entry_data_s *data, int *status)
{
    int  rc;

    rc = MMDB_aget_value(entry, data, path);
    *status = rc;

    switch (rc) {

    case MMDB_SUCCESS:
        return data->has_data ? VETTING_GEO_FOUND : VETTING_GEO_UNKNOWN;

    case MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR:
    case MMDB_INVALID_LOOKUP_PATH_ERROR:
        return VETTING_GEO_UNKNOWN;

    default:
        return VETTING_GEO_ERROR;
    }
}


static const char *
vetting_geo_strerror(int rc)
{
    if (rc == VETTING_GEO_NOT_MAP) {
        return "the record is not a map";
    }

    return MMDB_strerror(rc);
}


static void
vetting_geo_error(char *err, size_t err_size, const char *file,
    const char *fmt, ...)
{
    int      n;
    va_list  args;

    if (err == NULL || err_size == 0) {
        return;
    }

    n = snprintf(err, err_size, "\"%s\": ", file);
    if (n < 0 || (size_t) n >= err_size) {
        return;
    }

    va_start(args, fmt);
    (void) vsnprintf(err + n, err_size - n, fmt, args);
    va_end(args);
}
