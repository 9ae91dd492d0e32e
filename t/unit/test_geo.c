
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Unit tests of vetting_geo.c.  Run from t/unit after t/unit/mkdata.sh
 * has built the databases in t/unit/data/.
 */


#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <maxminddb.h>

#include "vetting_geo.h"


#define ERR_LEN     1024

/* expected answers: a country, or one of these */
#define UNKNOWN     NULL
#define ERROR       "!"


typedef struct {
    const char           *addr;
    const char           *cc;
} lookup_case_t;


typedef struct {
    char                  dir[64];
    char                  tmp[96];
    char                  files[96];
} test_dirs_t;


static test_dirs_t  dirs;


/* the networks of the v4-* and v6-* databases, looked up as IPv4 */
static const lookup_case_t  v4_cases[] = {
    { "203.0.113.7", "DE" },
    { "203.0.113.255", "DE" },
    { "198.51.100.200", "US" },
    { "::ffff:203.0.113.7", "DE" },
    { "::ffff:198.51.100.1", "US" },
    { "203.0.114.1", UNKNOWN },
    { "10.0.0.1", UNKNOWN },
    { "192.168.1.1", UNKNOWN },
    { "127.0.0.1", UNKNOWN },
    { "::ffff:10.0.0.1", UNKNOWN },
    { "1.1.1.1", UNKNOWN },
    { NULL, NULL }
};


/* IPv6 addresses: an IPv4 database knows none */
static const lookup_case_t  v6_in_v4_cases[] = {
    { "2001:db8:1::5", UNKNOWN },
    { "2001:db8:2::1", UNKNOWN },
    { "::1", UNKNOWN },
    { "::203.0.113.7", UNKNOWN },
    { NULL, NULL }
};


static const lookup_case_t  v6_cases[] = {
    { "2001:db8:1::5", "FR" },
    { "2001:db8:1:ffff:ffff:ffff:ffff:ffff", "FR" },
    { "2001:db8:2::1", UNKNOWN },
    { "::1", UNKNOWN },
    { "fe80::1", UNKNOWN },
    { NULL, NULL }
};


static void
make_sockaddr(const char *addr, struct sockaddr_storage *ss)
{
    struct sockaddr_in   *sin;
    struct sockaddr_in6  *sin6;

    memset(ss, 0, sizeof(struct sockaddr_storage));

    sin = (struct sockaddr_in *) ss;
    sin6 = (struct sockaddr_in6 *) ss;

    if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(443);
        return;
    }

    assert_int_equal(inet_pton(AF_INET6, addr, &sin6->sin6_addr), 1);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(443);
}


static void
expect_lookup(vetting_geo_t *geo, const char *addr, const char *want)
{
    char                     cc[4];
    vetting_geo_rc_e         rc;
    struct sockaddr_storage  ss;

    make_sockaddr(addr, &ss);
    memset(cc, 'x', sizeof(cc));

    rc = vetting_geo_lookup(geo, (struct sockaddr *) &ss, cc);

    if (want == UNKNOWN) {
        if (rc != VETTING_GEO_UNKNOWN) {
            fail_msg("%s: expected unknown, got %d", addr, (int) rc);
        }

    } else if (strcmp(want, ERROR) == 0) {
        if (rc != VETTING_GEO_ERROR) {
            fail_msg("%s: expected an error, got %d", addr, (int) rc);
        }

    } else {
        if (rc != VETTING_GEO_FOUND) {
            fail_msg("%s: expected %s, got %d", addr, want, (int) rc);
        }

        assert_string_equal(cc, want);
    }
}


static void
expect_cases(vetting_geo_t *geo, const lookup_case_t *cases)
{
    size_t  i;

    for (i = 0; cases[i].addr != NULL; i++) {
        expect_lookup(geo, cases[i].addr, cases[i].cc);
    }
}


static vetting_geo_t *
open_db(const char *file, const char *const *path)
{
    char            err[ERR_LEN];
    vetting_geo_t  *geo;

    err[0] = '\0';

    geo = vetting_geo_open(file, dirs.tmp, path, err, sizeof(err));
    if (geo == NULL) {
        fail_msg("vetting_geo_open(\"%s\"): %s", file, err);
    }

    return geo;
}


/* opening must fail with exactly the message given, or one naming file */

static void
expect_open_error(const char *file, const char *tmpdir,
    const char *const *path, const char *want)
{
    char            err[ERR_LEN], quoted[512];
    vetting_geo_t  *geo;

    err[0] = '\0';

    geo = vetting_geo_open(file, tmpdir, path, err, sizeof(err));
    if (geo != NULL) {
        vetting_geo_close(geo);
        fail_msg("vetting_geo_open(\"%s\") did not fail", file);
    }

    (void) snprintf(quoted, sizeof(quoted), "\"%s\": ", file);

    if (strncmp(err, quoted, strlen(quoted)) != 0) {
        fail_msg("the error does not name the file: %s", err);
    }

    if (want != NULL) {
        assert_string_equal(err, want);
    }
}


static size_t
count_entries(const char *dir)
{
    DIR            *d;
    size_t          n;
    struct dirent  *de;

    d = opendir(dir);
    assert_non_null(d);

    n = 0;

    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            n++;
        }
    }

    closedir(d);

    return n;
}


static unsigned char *
read_whole(const char *file, size_t *len)
{
    FILE           *f;
    long            size;
    unsigned char  *buf;

    f = fopen(file, "rb");
    assert_non_null(f);

    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size > 0);
    rewind(f);

    buf = malloc((size_t) size);
    assert_non_null(buf);

    assert_int_equal(fread(buf, 1, (size_t) size, f), (size_t) size);
    fclose(f);

    *len = (size_t) size;

    return buf;
}


/* writes over the file in place: same inode, as cp or a careless update */

static void
write_whole(const char *file, const unsigned char *buf, size_t len)
{
    int  fd;

    fd = open(file, O_WRONLY|O_CREAT|O_TRUNC, 0644);
    assert_true(fd != -1);

    if (len > 0) {
        assert_int_equal(write(fd, buf, len), (ssize_t) len);
    }

    assert_int_equal(close(fd), 0);
}


static void
files_path(char *out, size_t size, const char *name)
{
    int  n;

    n = snprintf(out, size, "%s/%s", dirs.files, name);
    assert_true(n > 0 && (size_t) n < size);
}


/* the data section lies between the search tree and the metadata marker */

static void
data_section(const char *file, const unsigned char *buf, size_t len,
    size_t *start, size_t *end)
{
    size_t                i;
    MMDB_s                mmdb;
    static const char     marker[] = "\xab\xcd\xefMaxMind.com";

    assert_int_equal(MMDB_open(file, MMDB_MODE_MMAP, &mmdb), MMDB_SUCCESS);

    *start = (size_t) mmdb.metadata.node_count
             * mmdb.metadata.record_size / 4 + 16;

    MMDB_close(&mmdb);

    for (i = len - (sizeof(marker) - 1); i > *start; i--) {
        if (memcmp(buf + i, marker, sizeof(marker) - 1) == 0) {
            *end = i;
            return;
        }
    }

    fail_msg("no metadata marker in \"%s\"", file);
}


static int
group_setup(void **state)
{
    (void) state;

    (void) snprintf(dirs.dir, sizeof(dirs.dir), "/tmp/test_geo.XXXXXX");

    if (mkdtemp(dirs.dir) == NULL) {
        return -1;
    }

    (void) snprintf(dirs.tmp, sizeof(dirs.tmp), "%s/tmp", dirs.dir);
    (void) snprintf(dirs.files, sizeof(dirs.files), "%s/files", dirs.dir);

    if (mkdir(dirs.tmp, 0700) == -1 || mkdir(dirs.files, 0700) == -1) {
        return -1;
    }

    return 0;
}


static int
group_teardown(void **state)
{
    DIR            *d;
    char            name[512];
    struct dirent  *de;

    (void) state;

    d = opendir(dirs.files);

    while (d != NULL && (de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.') {
            (void) snprintf(name, sizeof(name), "%s/%s", dirs.files,
                            de->d_name);
            (void) unlink(name);
        }
    }

    if (d != NULL) {
        closedir(d);
    }

    /* rmdir fails if any test left a copy in the temporary directory */

    if (rmdir(dirs.tmp) == -1 || rmdir(dirs.files) == -1
        || rmdir(dirs.dir) == -1)
    {
        fprintf(stderr, "test_geo: cannot remove %s: %s\n", dirs.dir,
                strerror(errno));
        return -1;
    }

    return 0;
}


static void
test_ipv4_db_geoip2_layout_answers(void **state)
{
    vetting_geo_t  *geo;

    (void) state;

    geo = open_db("data/v4-geoip2.mmdb", NULL);

    expect_cases(geo, v4_cases);
    expect_cases(geo, v6_in_v4_cases);

    vetting_geo_close(geo);
}


static void
test_ipv4_db_flat_layout_answers(void **state)
{
    vetting_geo_t  *geo;

    (void) state;

    geo = open_db("data/v4-flat.mmdb", NULL);

    expect_cases(geo, v4_cases);
    expect_cases(geo, v6_in_v4_cases);

    vetting_geo_close(geo);
}


static void
test_ipv6_db_aliased_geoip2_layout_answers(void **state)
{
    vetting_geo_t  *geo;

    (void) state;

    geo = open_db("data/v6-geoip2.mmdb", NULL);

    expect_cases(geo, v4_cases);
    expect_cases(geo, v6_cases);

    vetting_geo_close(geo);
}


static void
test_ipv6_db_aliased_flat_layout_answers(void **state)
{
    vetting_geo_t  *geo;

    (void) state;

    geo = open_db("data/v6-flat.mmdb", NULL);

    expect_cases(geo, v4_cases);
    expect_cases(geo, v6_cases);

    vetting_geo_close(geo);
}


static void
test_ipv6_db_unaliased_geoip2_layout_answers(void **state)
{
    vetting_geo_t  *geo;

    (void) state;

    geo = open_db("data/v6-geoip2-noalias.mmdb", NULL);

    expect_cases(geo, v4_cases);
    expect_cases(geo, v6_cases);

    vetting_geo_close(geo);
}


static void
test_ipv6_db_unaliased_flat_layout_answers(void **state)
{
    vetting_geo_t  *geo;

    (void) state;

    geo = open_db("data/v6-flat-noalias.mmdb", NULL);

    expect_cases(geo, v4_cases);
    expect_cases(geo, v6_cases);

    vetting_geo_close(geo);
}


/*
 * The reason for unmapping: libmaxminddb itself finds ::ffff:a.b.c.d
 * in an IPv6 database only where the writer aliased it.
 */

static void
test_library_finds_mapped_address_only_when_aliased(void **state)
{
    int                   gai, rc;
    MMDB_s                mmdb;
    MMDB_lookup_result_s  res;

    (void) state;

    assert_int_equal(MMDB_open("data/v6-geoip2.mmdb", MMDB_MODE_MMAP, &mmdb),
                     MMDB_SUCCESS);
    res = MMDB_lookup_string(&mmdb, "::ffff:203.0.113.7", &gai, &rc);
    assert_int_equal(gai, 0);
    assert_int_equal(rc, MMDB_SUCCESS);
    assert_true(res.found_entry);
    MMDB_close(&mmdb);

    assert_int_equal(MMDB_open("data/v6-geoip2-noalias.mmdb",
                               MMDB_MODE_MMAP, &mmdb),
                     MMDB_SUCCESS);
    res = MMDB_lookup_string(&mmdb, "::ffff:203.0.113.7", &gai, &rc);
    assert_int_equal(gai, 0);
    assert_int_equal(rc, MMDB_SUCCESS);
    assert_false(res.found_entry);
    MMDB_close(&mmdb);
}


static void
test_ipv4_data_kept_only_in_mapped_range_is_found(void **state)
{
    vetting_geo_t  *geo;

    (void) state;

    geo = open_db("data/v6-mapped-only.mmdb", NULL);

    expect_cases(geo, v4_cases);
    expect_cases(geo, v6_cases);
    expect_lookup(geo, "::203.0.113.7", UNKNOWN);

    vetting_geo_close(geo);
}


/* an AF_INET address is looked up as ::a.b.c.d, where the writer puts it */

static void
test_ipv4_compatible_address_finds_ipv4_data_in_ipv6_db(void **state)
{
    vetting_geo_t  *geo;

    (void) state;

    geo = open_db("data/v6-geoip2.mmdb", NULL);
    expect_lookup(geo, "::203.0.113.7", "DE");
    vetting_geo_close(geo);

    geo = open_db("data/v6-flat-noalias.mmdb", NULL);
    expect_lookup(geo, "::203.0.113.7", "DE");
    vetting_geo_close(geo);
}


/* 6to4 and Teredo stay IPv6: they get what the database says */

static void
test_6to4_and_teredo_follow_database_aliasing(void **state)
{
    vetting_geo_t  *geo;

    (void) state;

    geo = open_db("data/v6-geoip2.mmdb", NULL);
    expect_lookup(geo, "2002:cb00:7107::1", "DE");
    expect_lookup(geo, "2001:0:cb00:7107::1", "DE");
    vetting_geo_close(geo);

    geo = open_db("data/v6-geoip2-noalias.mmdb", NULL);
    expect_lookup(geo, "2002:cb00:7107::1", UNKNOWN);
    expect_lookup(geo, "2001:0:cb00:7107::1", UNKNOWN);
    vetting_geo_close(geo);
}


/*
 * The unnamed unix socket address is only a family, and ends where an
 * inaccessible page begins: libmaxminddb 1.7.1, which ASan does not
 * watch, would read an IPv4 address past its end and crash.
 */

static void
test_other_families_are_unknown(void **state)
{
    char                     cc[4];
    long                     page;
    size_t                   i;
    sa_family_t             *unnamed;
    unsigned char           *mem;
    vetting_geo_t           *geo[2];
    struct sockaddr_un       sun;
    struct sockaddr_storage  ss;

    (void) state;

    geo[0] = open_db("data/v4-geoip2.mmdb", NULL);
    geo[1] = open_db("data/v6-geoip2.mmdb", NULL);

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, "/run/x", 7);

    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNSPEC;

    page = sysconf(_SC_PAGESIZE);
    assert_true(page > 0);

    mem = mmap(NULL, 2 * page, PROT_READ|PROT_WRITE,
               MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    assert_int_equal(mprotect(mem + page, page, PROT_NONE), 0);

    unnamed = (sa_family_t *) (mem + page - sizeof(sa_family_t));
    *unnamed = AF_UNIX;

    for (i = 0; i < 2; i++) {
        assert_int_equal(vetting_geo_lookup(geo[i],
                                            (struct sockaddr *) &sun, cc),
                         VETTING_GEO_UNKNOWN);
        assert_int_equal(vetting_geo_lookup(geo[i],
                                            (struct sockaddr *) &ss, cc),
                         VETTING_GEO_UNKNOWN);
        assert_int_equal(vetting_geo_lookup(geo[i],
                                            (struct sockaddr *) unnamed, cc),
                         VETTING_GEO_UNKNOWN);
        vetting_geo_close(geo[i]);
    }

    assert_int_equal(munmap(mem, 2 * page), 0);
}


static void
test_unmap_rewrites_mapped_address(void **state)
{
    struct sockaddr_in       *sin;
    struct sockaddr_storage   ss, out;

    (void) state;

    make_sockaddr("::ffff:203.0.113.7", &ss);
    memset(&out, 0xaa, sizeof(out));

    assert_int_equal(vetting_geo_unmap((struct sockaddr *) &ss,
                                       (struct sockaddr *) &out), 1);

    sin = (struct sockaddr_in *) &out;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 443);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0xcb007107);

    /* in place */

    assert_int_equal(vetting_geo_unmap((struct sockaddr *) &ss,
                                       (struct sockaddr *) &ss), 1);

    sin = (struct sockaddr_in *) &ss;
    assert_int_equal(sin->sin_family, AF_INET);
    assert_int_equal(ntohs(sin->sin_port), 443);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0xcb007107);
}


static void
test_unmap_leaves_other_addresses(void **state)
{
    size_t                   i;
    struct sockaddr_storage  ss, out, orig;

    static const char  *addrs[] = {
        "203.0.113.7", "::203.0.113.7", "2001:db8::1", "::1", "::",
        "64:ff9b::cb00:7107", "2002:cb00:7107::1", NULL
    };

    (void) state;

    for (i = 0; addrs[i] != NULL; i++) {
        make_sockaddr(addrs[i], &ss);
        orig = ss;
        memset(&out, 0xaa, sizeof(out));

        assert_int_equal(vetting_geo_unmap((struct sockaddr *) &ss,
                                           (struct sockaddr *) &out), 0);
        assert_memory_equal(&ss, &orig, sizeof(ss));
    }
}


static void
test_layout_detected_from_first_record(void **state)
{
    vetting_geo_t  *geo;

    (void) state;

    geo = open_db("data/v4-flat.mmdb", NULL);
    assert_string_equal(vetting_geo_country_path(geo), "country_code");
    vetting_geo_close(geo);

    geo = open_db("data/v6-flat-noalias.mmdb", NULL);
    assert_string_equal(vetting_geo_country_path(geo), "country_code");
    vetting_geo_close(geo);

    geo = open_db("data/v6-geoip2.mmdb", NULL);
    assert_string_equal(vetting_geo_country_path(geo), "country.iso_code");
    vetting_geo_close(geo);
}


static void
test_layout_detected_from_probes(void **state)
{
    vetting_geo_t  *geo;

    (void) state;

    geo = open_db("data/probe-v4-flat.mmdb", NULL);
    assert_string_equal(vetting_geo_country_path(geo), "country_code");
    expect_lookup(geo, "1.1.1.1", "AU");
    expect_lookup(geo, "8.8.8.8", "US");
    vetting_geo_close(geo);

    geo = open_db("data/probe-v6-geoip2.mmdb", NULL);
    assert_string_equal(vetting_geo_country_path(geo), "country.iso_code");
    expect_lookup(geo, "2001:4860::1", "US");
    expect_lookup(geo, "::ffff:1.1.1.1", "AU");
    vetting_geo_close(geo);
}


static void
test_no_country_anywhere_defaults_to_geoip2(void **state)
{
    vetting_geo_t  *geo;

    (void) state;

    geo = open_db("data/nocountry.mmdb", NULL);
    assert_string_equal(vetting_geo_country_path(geo), "country.iso_code");
    expect_lookup(geo, "203.0.113.7", UNKNOWN);
    vetting_geo_close(geo);
}


static void
test_configured_path_is_used(void **state)
{
    vetting_geo_t  *geo;

    static const char *const  geoip2[] = { "country", "iso_code", NULL };
    static const char *const  flat[] = { "country_code", NULL };
    static const char *const  below[] = { "country_code", "x", NULL };

    (void) state;

    geo = open_db("data/v4-flat.mmdb", geoip2);
    assert_string_equal(vetting_geo_country_path(geo), "country.iso_code");
    expect_lookup(geo, "203.0.113.7", UNKNOWN);
    vetting_geo_close(geo);

    geo = open_db("data/v4-flat.mmdb", flat);
    expect_lookup(geo, "203.0.113.7", "DE");
    vetting_geo_close(geo);

    geo = open_db("data/v4-flat.mmdb", below);
    assert_string_equal(vetting_geo_country_path(geo), "country_code.x");
    expect_lookup(geo, "203.0.113.7", UNKNOWN);
    vetting_geo_close(geo);

    geo = open_db("data/v6-geoip2.mmdb", flat);
    expect_lookup(geo, "2001:db8:1::5", UNKNOWN);
    vetting_geo_close(geo);
}


static void
test_bad_configured_path_is_refused(void **state)
{
    static const char *const  none[] = { NULL };
    static const char *const  empty[] = { "country", "", NULL };
    static const char *const  nine[] = {
        "a", "b", "c", "d", "e", "f", "g", "h", "i", NULL
    };
    static const char  *err = "\"data/v4-geoip2.mmdb\": the country path "
                              "is empty, longer than 8 keys or 255 bytes, "
                              "or has an empty key";

    (void) state;

    expect_open_error("data/v4-geoip2.mmdb", dirs.tmp, none, err);
    expect_open_error("data/v4-geoip2.mmdb", dirs.tmp, empty, err);
    expect_open_error("data/v4-geoip2.mmdb", dirs.tmp, nine, err);
}


static void
test_malformed_country_codes_are_unknown(void **state)
{
    vetting_geo_t  *geo;

    static const lookup_case_t  cases[] = {
        { "192.0.2.1", "DE" },          /* "de" */
        { "192.0.2.65", UNKNOWN },      /* "D1" */
        { "192.0.2.129", UNKNOWN },     /* "DEU" */
        { "192.0.2.193", UNKNOWN },     /* no country */
        { "192.0.2.225", UNKNOWN },     /* two UTF-8 bytes */
        { "198.51.100.1", "US" },
        { NULL, NULL }
    };

    (void) state;

    geo = open_db("data/odd.mmdb", NULL);
    expect_cases(geo, cases);
    vetting_geo_close(geo);
}


static void
test_metadata_is_reported(void **state)
{
    vetting_geo_t  *geo;

    (void) state;

    geo = open_db("data/v6-flat.mmdb", NULL);
    assert_string_equal(vetting_geo_type(geo), "Vetting-Test-Country");
    assert_true(vetting_geo_build_epoch(geo) > 1600000000);
    vetting_geo_close(geo);

    vetting_geo_close(NULL);
}


static void
test_missing_file_is_refused(void **state)
{
    (void) state;

    expect_open_error("data/missing.mmdb", dirs.tmp, NULL,
                      "\"data/missing.mmdb\": open() failed "
                      "(2: No such file or directory)");
}


static void
test_empty_file_is_refused(void **state)
{
    char  file[256], want[512];

    (void) state;

    files_path(file, sizeof(file), "empty.mmdb");
    write_whole(file, NULL, 0);

    (void) snprintf(want, sizeof(want), "\"%s\": the file is empty", file);
    expect_open_error(file, dirs.tmp, NULL, want);
}


static void
test_non_regular_files_are_refused(void **state)
{
    char  file[256], want[512];

    (void) state;

    expect_open_error("data", dirs.tmp, NULL,
                      "\"data\": the file is not a regular file");

    /* a fifo without a writer: opening it must not wait */

    files_path(file, sizeof(file), "fifo.mmdb");
    assert_int_equal(mkfifo(file, 0600), 0);

    (void) snprintf(want, sizeof(want),
                    "\"%s\": the file is not a regular file", file);
    expect_open_error(file, dirs.tmp, NULL, want);
}


static void
test_truncated_file_is_refused(void **state)
{
    char            file[256], want[512];
    size_t          len;
    unsigned char  *buf;

    (void) state;

    buf = read_whole("data/v6-geoip2.mmdb", &len);

    files_path(file, sizeof(file), "half.mmdb");
    write_whole(file, buf, len / 2);
    free(buf);

    (void) snprintf(want, sizeof(want),
                    "\"%s\": MMDB_open() failed: The MaxMind DB file "
                    "contains invalid metadata", file);
    expect_open_error(file, dirs.tmp, NULL, want);
}


static void
test_text_file_is_refused(void **state)
{
    char                 file[256], want[512];
    static const char    text[] = "US 203.0.113.0/24\n";

    (void) state;

    files_path(file, sizeof(file), "text.mmdb");
    write_whole(file, (const unsigned char *) text, sizeof(text) - 1);

    (void) snprintf(want, sizeof(want),
                    "\"%s\": MMDB_open() failed: The MaxMind DB file "
                    "contains invalid metadata", file);
    expect_open_error(file, dirs.tmp, NULL, want);
}


/*
 * Pseudo-random bytes over the whole data section (xorshift32, fixed
 * seed).  Nearly every seed is caught; a few of 2000 tried decode as
 * maps by chance, which is why the seed is fixed.
 */

static void
test_corrupt_data_section_is_refused(void **state)
{
    char            file[256], want[512];
    size_t          i, len, start, end;
    uint32_t        x;
    unsigned char  *buf;

    (void) state;

    buf = read_whole("data/probe-v4-flat.mmdb", &len);
    data_section("data/probe-v4-flat.mmdb", buf, len, &start, &end);

    x = 1;

    for (i = start; i < end; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (unsigned char) x;
    }

    files_path(file, sizeof(file), "corrupt.mmdb");
    write_whole(file, buf, len);
    free(buf);

    (void) snprintf(want, sizeof(want),
                    "\"%s\": probe lookup of 1.1.1.1 failed: The MaxMind DB "
                    "file's data section contains bad data (unknown data "
                    "type or corrupt data)", file);
    expect_open_error(file, dirs.tmp, NULL, want);
}


/* a record that no probe reaches is damaged: its lookups are errors */

static void
test_corrupt_record_is_lookup_error(void **state)
{
    int                   gai, rc;
    char                  file[256];
    size_t                len, start, end, at;
    MMDB_s                mmdb;
    unsigned char        *buf;
    vetting_geo_t        *geo;
    MMDB_lookup_result_s  res;

    (void) state;

    buf = read_whole("data/probe-v4-flat.mmdb", &len);
    data_section("data/probe-v4-flat.mmdb", buf, len, &start, &end);

    assert_int_equal(MMDB_open("data/probe-v4-flat.mmdb", MMDB_MODE_MMAP,
                               &mmdb),
                     MMDB_SUCCESS);
    res = MMDB_lookup_string(&mmdb, "203.0.113.7", &gai, &rc);
    assert_true(gai == 0 && rc == MMDB_SUCCESS && res.found_entry);
    MMDB_close(&mmdb);

    /* a 4-byte pointer past the end of the data section */

    at = start + res.entry.offset;
    assert_true(at + 5 <= end);
    memcpy(buf + at, "\x38\xff\xff\xff\xff", 5);

    files_path(file, sizeof(file), "badrecord.mmdb");
    write_whole(file, buf, len);
    free(buf);

    geo = open_db(file, NULL);
    expect_lookup(geo, "203.0.113.7", ERROR);
    expect_lookup(geo, "::ffff:203.0.113.7", ERROR);
    expect_lookup(geo, "1.1.1.1", "AU");
    expect_lookup(geo, "8.8.8.8", "US");
    expect_lookup(geo, "10.0.0.1", UNKNOWN);
    vetting_geo_close(geo);
}


static void
test_bad_tmpdir_is_refused(void **state)
{
    char            err[ERR_LEN];
    vetting_geo_t  *geo;

    (void) state;

    geo = vetting_geo_open("data/v4-geoip2.mmdb", "/nonexistent/dir", NULL,
                           err, sizeof(err));
    assert_null(geo);
    assert_string_equal(err, "\"data/v4-geoip2.mmdb\": mkstemp() in "
                        "\"/nonexistent/dir\" failed "
                        "(2: No such file or directory)");
}


static void
test_copy_leaves_no_file_in_tmpdir(void **state)
{
    char            file[256];
    size_t          len;
    unsigned char  *buf;
    vetting_geo_t  *geo[2];

    (void) state;

    assert_int_equal(count_entries(dirs.tmp), 0);

    geo[0] = open_db("data/v4-geoip2.mmdb", NULL);
    geo[1] = open_db("data/v6-flat.mmdb", NULL);

    /* the copies exist, but under no name */

    assert_int_equal(count_entries(dirs.tmp), 0);
    expect_lookup(geo[0], "203.0.113.7", "DE");
    expect_lookup(geo[1], "2001:db8:1::5", "FR");

    vetting_geo_close(geo[0]);
    vetting_geo_close(geo[1]);

    /* nor does a copy that failed the checks */

    buf = read_whole("data/v4-geoip2.mmdb", &len);
    files_path(file, sizeof(file), "short.mmdb");
    write_whole(file, buf, len - 1);
    free(buf);

    expect_open_error(file, dirs.tmp, NULL, NULL);

    assert_int_equal(count_entries(dirs.tmp), 0);
}


static void
test_replacing_file_in_place_keeps_answers(void **state)
{
    char            file[256];
    size_t          len;
    unsigned char  *buf;
    vetting_geo_t  *geo, *fresh;

    (void) state;

    files_path(file, sizeof(file), "live.mmdb");

    buf = read_whole("data/v4-geoip2.mmdb", &len);
    write_whole(file, buf, len);
    free(buf);

    geo = open_db(file, NULL);
    expect_lookup(geo, "203.0.113.7", "DE");
    expect_lookup(geo, "198.51.100.1", "US");

    /* same inode, other countries */

    buf = read_whole("data/v4-geoip2-other.mmdb", &len);
    write_whole(file, buf, len);
    free(buf);

    fresh = open_db(file, NULL);
    expect_lookup(fresh, "203.0.113.7", "FR");
    expect_lookup(fresh, "198.51.100.1", "CA");
    vetting_geo_close(fresh);

    expect_lookup(geo, "203.0.113.7", "DE");
    expect_lookup(geo, "198.51.100.1", "US");

    /* cut to nothing: a mapping of the file itself would now SIGBUS */

    write_whole(file, NULL, 0);

    expect_lookup(geo, "203.0.113.7", "DE");
    expect_lookup(geo, "198.51.100.1", "US");

    vetting_geo_close(geo);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_ipv4_db_geoip2_layout_answers),
        cmocka_unit_test(test_ipv4_db_flat_layout_answers),
        cmocka_unit_test(test_ipv6_db_aliased_geoip2_layout_answers),
        cmocka_unit_test(test_ipv6_db_aliased_flat_layout_answers),
        cmocka_unit_test(test_ipv6_db_unaliased_geoip2_layout_answers),
        cmocka_unit_test(test_ipv6_db_unaliased_flat_layout_answers),
        cmocka_unit_test(test_library_finds_mapped_address_only_when_aliased),
        cmocka_unit_test(test_ipv4_data_kept_only_in_mapped_range_is_found),
        cmocka_unit_test(
            test_ipv4_compatible_address_finds_ipv4_data_in_ipv6_db),
        cmocka_unit_test(test_6to4_and_teredo_follow_database_aliasing),
        cmocka_unit_test(test_other_families_are_unknown),
        cmocka_unit_test(test_unmap_rewrites_mapped_address),
        cmocka_unit_test(test_unmap_leaves_other_addresses),
        cmocka_unit_test(test_layout_detected_from_first_record),
        cmocka_unit_test(test_layout_detected_from_probes),
        cmocka_unit_test(test_no_country_anywhere_defaults_to_geoip2),
        cmocka_unit_test(test_configured_path_is_used),
        cmocka_unit_test(test_bad_configured_path_is_refused),
        cmocka_unit_test(test_malformed_country_codes_are_unknown),
        cmocka_unit_test(test_metadata_is_reported),
        cmocka_unit_test(test_missing_file_is_refused),
        cmocka_unit_test(test_empty_file_is_refused),
        cmocka_unit_test(test_non_regular_files_are_refused),
        cmocka_unit_test(test_truncated_file_is_refused),
        cmocka_unit_test(test_text_file_is_refused),
        cmocka_unit_test(test_corrupt_data_section_is_refused),
        cmocka_unit_test(test_corrupt_record_is_lookup_error),
        cmocka_unit_test(test_bad_tmpdir_is_refused),
        cmocka_unit_test(test_copy_leaves_no_file_in_tmpdir),
        cmocka_unit_test(test_replacing_file_in_place_keeps_answers),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
