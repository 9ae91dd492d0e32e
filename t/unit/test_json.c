
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Unit tests for vetting_json.c: AuditEvent, OperationOutcome, OAuth
 * error objects, RateLimit field values and the time format.
 */


#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <yajl/yajl_tree.h>

#include "vetting_json.h"


#define S(s)  { (const unsigned char *) (s), sizeof(s) - 1 }

#define DCM   "http://dicom.nema.org/resources/ontology/DCM"
#define THO   "http://terminology.hl7.org/CodeSystem/"

/* 2025-03-01T14:22:05.123Z */
#define T0    1740838925123LL


static vetting_audit_event_t  refusal = {
    VETTING_AUDIT_REFUSAL,
    S("e-1"),
    T0,
    "write",
    S("write refused"),
    'C',
    "create",
    S("app-7f3c"),
    S("m-12345"),
    S("203.0.113.7"),
    S("acme"),
    S("gw-east-1"),
    S("US"),
    S("POST"),
    S("/fhir/r4/Observation"),
    405,
    NULL,
    0
};


static const char  refusal_json[] =
    "{\"resourceType\":\"AuditEvent\",\"id\":\"e-1\","
    "\"type\":{\"system\":\"" DCM "\",\"code\":\"110113\","
    "\"display\":\"Security Alert\"},"
    "\"subtype\":["
    "{\"system\":\"http://hl7.org/fhir/restful-interaction\","
    "\"code\":\"create\"},"
    "{\"system\":\"urn:ngx-vetting:reason\",\"code\":\"write\"}],"
    "\"action\":\"C\",\"recorded\":\"2025-03-01T14:22:05.123Z\","
    "\"outcome\":\"4\",\"outcomeDesc\":\"write refused\","
    "\"agent\":["
    "{\"type\":{\"coding\":[{\"system\":\"" DCM "\",\"code\":\"110150\","
    "\"display\":\"Application\"}]},"
    "\"who\":{\"identifier\":{\"system\":\"urn:ngx-vetting:client-id\","
    "\"value\":\"app-7f3c\"}},\"requestor\":false,"
    "\"network\":{\"address\":\"203.0.113.7\",\"type\":\"2\"}},"
    "{\"type\":{\"coding\":[{\"system\":\"" THO "v3-RoleClass\","
    "\"code\":\"PAT\",\"display\":\"patient\"}]},"
    "\"who\":{\"reference\":\"Patient/m-12345\"},\"requestor\":true}],"
    "\"source\":{\"site\":\"gw-east-1\","
    "\"observer\":{\"display\":\"ngx_vetting_module gw-east-1\"},"
    "\"type\":[{\"system\":\"" THO "security-source-type\",\"code\":\"6\","
    "\"display\":\"Security Server\"}]},"
    "\"entity\":["
    "{\"what\":{\"reference\":\"Patient/m-12345\"},"
    "\"type\":{\"system\":\"" THO "audit-entity-type\",\"code\":\"1\","
    "\"display\":\"Person\"},"
    "\"role\":{\"system\":\"" THO "object-role\",\"code\":\"1\","
    "\"display\":\"Patient\"}},"
    "{\"type\":{\"system\":\"" THO "audit-entity-type\",\"code\":\"2\","
    "\"display\":\"System Object\"},"
    "\"role\":{\"system\":\"" THO "object-role\",\"code\":\"24\","
    "\"display\":\"Query\"},"
    "\"description\":\"POST /fhir/r4/Observation\","
    "\"detail\":[{\"type\":\"http-status\",\"valueString\":\"405\"},"
    "{\"type\":\"tenant\",\"valueString\":\"acme\"},"
    "{\"type\":\"country\",\"valueString\":\"US\"}]}]}";


static const vetting_audit_detail_t  block_details[] = {
    { "count", S("6") },
    { "threshold", S("5") }
};


static vetting_audit_event_t  block = {
    VETTING_AUDIT_BLOCK,
    S("e-2"),
    T0,
    "members",
    S("app suspended"),
    'E',
    NULL,
    S("app-7f3c"),
    { NULL, 0 },
    S("203.0.113.7"),
    S("acme"),
    S("gw-east-1"),
    { NULL, 0 },
    { NULL, 0 },
    { NULL, 0 },
    0,
    block_details,
    2
};


static const char  block_json[] =
    "{\"resourceType\":\"AuditEvent\",\"id\":\"e-2\","
    "\"type\":{\"system\":\"" DCM "\",\"code\":\"110113\","
    "\"display\":\"Security Alert\"},"
    "\"subtype\":["
    "{\"system\":\"urn:ngx-vetting:reason\",\"code\":\"members\"}],"
    "\"action\":\"E\",\"recorded\":\"2025-03-01T14:22:05.123Z\","
    "\"outcome\":\"0\",\"outcomeDesc\":\"app suspended\","
    "\"agent\":["
    "{\"type\":{\"coding\":[{\"system\":\"" DCM "\",\"code\":\"110150\","
    "\"display\":\"Application\"}]},"
    "\"who\":{\"identifier\":{\"system\":\"urn:ngx-vetting:client-id\","
    "\"value\":\"app-7f3c\"}},\"requestor\":false,"
    "\"network\":{\"address\":\"203.0.113.7\",\"type\":\"2\"}}],"
    "\"source\":{\"site\":\"gw-east-1\","
    "\"observer\":{\"display\":\"ngx_vetting_module gw-east-1\"},"
    "\"type\":[{\"system\":\"" THO "security-source-type\",\"code\":\"6\","
    "\"display\":\"Security Server\"}]},"
    "\"entity\":["
    "{\"what\":{\"identifier\":{\"system\":\"urn:ngx-vetting:client-id\","
    "\"value\":\"app-7f3c\"}},"
    "\"type\":{\"system\":\"" THO "audit-entity-type\",\"code\":\"2\","
    "\"display\":\"System Object\"},"
    "\"role\":{\"system\":\"" THO "object-role\",\"code\":\"11\","
    "\"display\":\"Security User Entity\"},"
    "\"detail\":[{\"type\":\"tenant\",\"valueString\":\"acme\"},"
    "{\"type\":\"count\",\"valueString\":\"6\"},"
    "{\"type\":\"threshold\",\"valueString\":\"5\"}]}]}";


static unsigned char  out[8192];


/* formats ev and parses the result back; the tree must be freed */

static yajl_val
audit_tree(const vetting_audit_event_t *ev)
{
    char      *text, err[128];
    size_t     len;
    yajl_val   tree;

    assert_int_equal(vetting_audit_format(ev, out, sizeof(out), &len),
                     VETTING_OK);
    assert_null(memchr(out, '\n', len));

    text = malloc(len + 1);
    assert_non_null(text);
    memcpy(text, out, len);
    text[len] = '\0';

    /* yajl's parser checks UTF-8 as well as the syntax */

    tree = yajl_tree_parse(text, err, sizeof(err));
    free(text);

    assert_non_null(tree);

    return tree;
}


static yajl_val
get(yajl_val v, const char *a, const char *b, const char *c)
{
    const char  *path[4];

    path[0] = a;
    path[1] = b;
    path[2] = c;
    path[3] = NULL;

    return yajl_tree_get(v, path, yajl_t_any);
}


static yajl_val
item(yajl_val v, size_t i)
{
    assert_true(YAJL_IS_ARRAY(v));
    assert_true(i < v->u.array.len);

    return v->u.array.values[i];
}


static size_t
count(yajl_val v)
{
    assert_true(YAJL_IS_ARRAY(v));

    return v->u.array.len;
}


static void
assert_str(yajl_val v, const char *s)
{
    assert_true(YAJL_IS_STRING(v));
    assert_string_equal(YAJL_GET_STRING(v), s);
}


static void
test_audit_refusal_exact(void **state)
{
    size_t  len;

    (void) state;

    assert_int_equal(vetting_audit_format(&refusal, out, sizeof(out), &len),
                     VETTING_OK);
    assert_int_equal(len, sizeof(refusal_json) - 1);
    assert_memory_equal(out, refusal_json, len);
}


static void
test_audit_block_exact(void **state)
{
    size_t  len;

    (void) state;

    assert_int_equal(vetting_audit_format(&block, out, sizeof(out), &len),
                     VETTING_OK);
    assert_int_equal(len, sizeof(block_json) - 1);
    assert_memory_equal(out, block_json, len);
}


static void
test_audit_dry_run_outcome_is_success(void **state)
{
    yajl_val               tree;
    vetting_audit_event_t  ev;

    (void) state;

    ev = refusal;
    ev.kind = VETTING_AUDIT_DRY_RUN;

    tree = audit_tree(&ev);
    assert_str(get(tree, "outcome", NULL, NULL), "0");
    yajl_tree_free(tree);
}


static void
test_audit_unidentified_client(void **state)
{
    yajl_val               tree, agent;
    vetting_audit_event_t  ev;

    (void) state;

    ev = refusal;
    ev.app.len = 0;
    ev.member.len = 0;

    tree = audit_tree(&ev);

    agent = get(tree, "agent", NULL, NULL);
    assert_int_equal(count(agent), 1);
    assert_str(get(item(agent, 0), "name", NULL, NULL),
               "unidentified client");
    assert_null(get(item(agent, 0), "who", NULL, NULL));
    assert_true(YAJL_IS_FALSE(get(item(agent, 0), "requestor", NULL,
                                  NULL)));

    /* no member: only the request entity */
    assert_int_equal(count(get(tree, "entity", NULL, NULL)), 1);

    yajl_tree_free(tree);
}


static void
test_audit_no_entity_without_member_or_request(void **state)
{
    yajl_val               tree;
    vetting_audit_event_t  ev;

    (void) state;

    ev = refusal;
    ev.member.len = 0;
    ev.method.len = 0;

    tree = audit_tree(&ev);
    assert_null(get(tree, "entity", NULL, NULL));
    yajl_tree_free(tree);
}


static void
test_audit_request_entity_has_no_name(void **state)
{
    yajl_val  tree, e;

    (void) state;

    tree = audit_tree(&refusal);

    e = item(get(tree, "entity", NULL, NULL), 1);
    assert_null(get(e, "name", NULL, NULL));
    assert_null(get(e, "query", NULL, NULL));
    assert_str(get(e, "description", NULL, NULL),
               "POST /fhir/r4/Observation");

    yajl_tree_free(tree);
}


static void
test_audit_details_follow_request_facts(void **state)
{
    yajl_val               tree, detail;
    vetting_audit_event_t  ev;

    (void) state;

    ev = refusal;
    ev.status = 429;
    ev.tenant.len = 0;
    ev.details = block_details;
    ev.ndetails = 2;

    tree = audit_tree(&ev);

    detail = get(item(get(tree, "entity", NULL, NULL), 1), "detail", NULL,
                 NULL);
    assert_int_equal(count(detail), 4);
    assert_str(get(item(detail, 0), "type", NULL, NULL), "http-status");
    assert_str(get(item(detail, 0), "valueString", NULL, NULL), "429");
    assert_str(get(item(detail, 1), "type", NULL, NULL), "country");
    assert_str(get(item(detail, 2), "type", NULL, NULL), "count");
    assert_str(get(item(detail, 3), "valueString", NULL, NULL), "5");

    yajl_tree_free(tree);
}


static void
test_audit_block_with_request_keeps_details_on_app(void **state)
{
    yajl_val               tree, entity, detail;
    vetting_audit_event_t  ev;

    (void) state;

    ev = block;
    ev.method = refusal.method;
    ev.uri = refusal.uri;
    ev.status = 403;

    tree = audit_tree(&ev);

    entity = get(tree, "entity", NULL, NULL);
    assert_int_equal(count(entity), 2);

    /* the request entity: status and tenant, no pairs */
    detail = get(item(entity, 0), "detail", NULL, NULL);
    assert_int_equal(count(detail), 2);
    assert_str(get(item(detail, 1), "valueString", NULL, NULL), "acme");

    /* the app entity: the pairs only */
    assert_str(get(item(entity, 1), "role", "code", NULL), "11");
    detail = get(item(entity, 1), "detail", NULL, NULL);
    assert_int_equal(count(detail), 2);
    assert_str(get(item(detail, 0), "type", NULL, NULL), "count");

    yajl_tree_free(tree);
}


static void
test_audit_block_of_unidentified_app(void **state)
{
    yajl_val               tree, e;
    vetting_audit_event_t  ev;

    (void) state;

    ev = block;
    ev.app.len = 0;

    tree = audit_tree(&ev);

    e = item(get(tree, "entity", NULL, NULL), 0);
    assert_str(get(e, "what", "display", NULL), "unidentified client");

    yajl_tree_free(tree);
}


static void
test_audit_invalid_utf8_in_path(void **state)
{
    yajl_val               tree, e;
    vetting_audit_event_t  ev;

    static const char      uri[] =
        "/a\xff" "b\xc0\xaf" "c\xed\xa0\x80" "d\xc3\xa9" "e\xf0\x9f\x98\x80"
        "f\xf4\x90\x80\x80" "g\xe2\x82";

    (void) state;

    ev = refusal;
    ev.uri.data = (const unsigned char *) uri;
    ev.uri.len = sizeof(uri) - 1;

    tree = audit_tree(&ev);

    /*
     * each maximal invalid subpart becomes one U+FFFD: a lone byte,
     * an overlong lead and its tail, a surrogate's three bytes, a code
     * point above U+10FFFF, a truncated sequence at the end
     */

    e = item(get(tree, "entity", NULL, NULL), 1);
    assert_str(get(e, "description", NULL, NULL),
               "POST /a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd"
               "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
               "d\xc3\xa9" "e\xf0\x9f\x98\x80"
               "f\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
               "g\xef\xbf\xbd");

    yajl_tree_free(tree);
}


static void
test_audit_invalid_utf8_everywhere(void **state)
{
    yajl_val                tree, e;
    vetting_audit_event_t   ev;
    vetting_audit_detail_t  d;

    (void) state;

    ev = refusal;
    ev.app.data = (const unsigned char *) "a\x80";
    ev.app.len = 2;
    ev.member.data = (const unsigned char *) "m\xfe";
    ev.member.len = 2;
    ev.gateway.data = (const unsigned char *) "\xc3";
    ev.gateway.len = 1;
    ev.description.data = (const unsigned char *) "x\xff";
    ev.description.len = 2;
    ev.method.data = (const unsigned char *) "G\x85T";
    ev.method.len = 3;
    ev.reason = "r\xff";

    d.type = "t\xff";
    d.value.data = (const unsigned char *) "v\xff";
    d.value.len = 2;
    ev.details = &d;
    ev.ndetails = 1;

    tree = audit_tree(&ev);

    assert_str(get(item(get(tree, "agent", NULL, NULL), 0), "who",
                   "identifier", "value"), "a\xef\xbf\xbd");
    assert_str(get(item(get(tree, "agent", NULL, NULL), 1), "who",
                   "reference", NULL), "Patient/m\xef\xbf\xbd");
    assert_str(get(tree, "source", "observer", "display"),
               "ngx_vetting_module \xef\xbf\xbd");
    assert_str(get(tree, "outcomeDesc", NULL, NULL), "x\xef\xbf\xbd");
    assert_str(get(item(get(tree, "subtype", NULL, NULL), 1), "code", NULL,
                   NULL), "r\xef\xbf\xbd");

    e = item(get(tree, "entity", NULL, NULL), 1);
    assert_str(get(e, "description", NULL, NULL),
               "G\xef\xbf\xbdT /fhir/r4/Observation");

    e = item(get(e, "detail", NULL, NULL), 3);
    assert_str(get(e, "type", NULL, NULL), "t\xef\xbf\xbd");
    assert_str(get(e, "valueString", NULL, NULL), "v\xef\xbf\xbd");

    yajl_tree_free(tree);
}


static void
test_audit_control_characters_escaped(void **state)
{
    yajl_val               tree;
    vetting_audit_event_t  ev;

    (void) state;

    ev = refusal;
    ev.uri.data = (const unsigned char *) "/x\r\n\"\\\t\x01";
    ev.uri.len = 8;

    tree = audit_tree(&ev);

    assert_str(get(item(get(tree, "entity", NULL, NULL), 1), "description",
                   NULL, NULL), "POST /x\r\n\"\\\t\x01");

    yajl_tree_free(tree);
}


static void
test_audit_buffer_too_small(void **state)
{
    size_t  len, size;

    (void) state;

    for (size = 0; size < sizeof(refusal_json) - 1; size++) {
        assert_int_equal(vetting_audit_format(&refusal, out, size, &len),
                         VETTING_ERROR);
    }

    assert_int_equal(vetting_audit_format(&refusal, out, size, &len),
                     VETTING_OK);
    assert_int_equal(len, size);
}


static void
test_audit_huge_invalid_uri_refused(void **state)
{
    size_t                  len;
    unsigned char          *uri;
    vetting_audit_event_t   ev;

    (void) state;

    /* 8000 invalid bytes would need 24000 after repair */

    uri = malloc(8000);
    assert_non_null(uri);
    memset(uri, 0xff, 8000);

    ev = refusal;
    ev.uri.data = uri;
    ev.uri.len = 8000;

    assert_int_equal(vetting_audit_format(&ev, out, sizeof(out), &len),
                     VETTING_ERROR);

    free(uri);
}


static void
test_audit_bad_action_left_out(void **state)
{
    yajl_val               tree;
    vetting_audit_event_t  ev;

    (void) state;

    ev = refusal;
    ev.action = 'X';
    ev.interaction = NULL;

    tree = audit_tree(&ev);
    assert_null(get(tree, "action", NULL, NULL));
    assert_int_equal(count(get(tree, "subtype", NULL, NULL)), 1);
    yajl_tree_free(tree);
}


static void
test_audit_bad_kind_refused(void **state)
{
    size_t                 len;
    vetting_audit_event_t  ev;

    (void) state;

    ev = refusal;
    ev.kind = (vetting_audit_kind_e) 7;

    assert_int_equal(vetting_audit_format(&ev, out, sizeof(out), &len),
                     VETTING_ERROR);
}


static void
test_outcome_exact(void **state)
{
    size_t  len;

    static const char  expect[] =
        "{\"resourceType\":\"OperationOutcome\",\"issue\":["
        "{\"severity\":\"error\",\"code\":\"forbidden\","
        "\"details\":{\"coding\":[{\"system\":\"" THO "operation-outcome\","
        "\"code\":\"MSG_OP_NOT_ALLOWED\"}]},"
        "\"diagnostics\":\"the API is read-only\"}]}";

    (void) state;

    assert_int_equal(vetting_outcome_format("error", "forbidden",
                                            "MSG_OP_NOT_ALLOWED",
                                            "the API is read-only",
                                            out, sizeof(out), &len),
                     VETTING_OK);
    assert_int_equal(len, sizeof(expect) - 1);
    assert_memory_equal(out, expect, len);
}


static void
test_outcome_minimal_exact(void **state)
{
    size_t  len;

    static const char  expect[] =
        "{\"resourceType\":\"OperationOutcome\",\"issue\":["
        "{\"severity\":\"error\",\"code\":\"throttled\"}]}";

    (void) state;

    assert_int_equal(vetting_outcome_format("error", "throttled", NULL, NULL,
                                            out, sizeof(out), &len),
                     VETTING_OK);
    assert_int_equal(len, sizeof(expect) - 1);
    assert_memory_equal(out, expect, len);
}


static void
test_outcome_too_small_and_missing_code(void **state)
{
    size_t  len;

    (void) state;

    assert_int_equal(vetting_outcome_format("error", "throttled", NULL, NULL,
                                            out, 20, &len),
                     VETTING_ERROR);
    assert_int_equal(vetting_outcome_format("error", NULL, NULL, NULL,
                                            out, sizeof(out), &len),
                     VETTING_ERROR);
    assert_int_equal(vetting_outcome_format(NULL, "security", NULL, NULL,
                                            out, sizeof(out), &len),
                     VETTING_ERROR);
}


static void
test_outcome_diagnostics_repaired(void **state)
{
    size_t  len;

    static const char  expect[] =
        "{\"resourceType\":\"OperationOutcome\",\"issue\":["
        "{\"severity\":\"fatal\",\"code\":\"security\","
        "\"diagnostics\":\"bad \xef\xbf\xbd \\\"x\\\"\"}]}";

    (void) state;

    assert_int_equal(vetting_outcome_format("fatal", "security", NULL,
                                            "bad \xff \"x\"",
                                            out, sizeof(out), &len),
                     VETTING_OK);
    assert_int_equal(len, sizeof(expect) - 1);
    assert_memory_equal(out, expect, len);
}


static void
test_oauth_error_exact(void **state)
{
    size_t  len;

    static const char  expect[] =
        "{\"error\":\"invalid_client\","
        "\"error_description\":\"client suspended\"}";

    (void) state;

    assert_int_equal(vetting_oauth_error_format("invalid_client",
                                                "client suspended",
                                                out, sizeof(out), &len),
                     VETTING_OK);
    assert_int_equal(len, sizeof(expect) - 1);
    assert_memory_equal(out, expect, len);
}


static void
test_oauth_error_without_description(void **state)
{
    size_t  len;

    static const char  expect[] = "{\"error\":\"unauthorized_client\"}";

    (void) state;

    assert_int_equal(vetting_oauth_error_format("unauthorized_client", NULL,
                                                out, sizeof(out), &len),
                     VETTING_OK);
    assert_int_equal(len, sizeof(expect) - 1);
    assert_memory_equal(out, expect, len);

    assert_int_equal(vetting_oauth_error_format("unauthorized_client", NULL,
                                                out, len - 1, &len),
                     VETTING_ERROR);
    assert_int_equal(vetting_oauth_error_format(NULL, "x", out, sizeof(out),
                                                &len),
                     VETTING_ERROR);
}


static void
test_ratelimit_policy_exact(void **state)
{
    char  buf[64];

    (void) state;

    assert_int_equal(vetting_ratelimit_policy(buf, sizeof(buf), "burst", 100,
                                              60), 18);
    assert_string_equal(buf, "\"burst\";q=100;w=60");

    assert_int_equal(vetting_ratelimit_policy(buf, sizeof(buf), "daily",
                                              UINT64_MAX, 86400), 38);
    assert_string_equal(buf, "\"daily\";q=18446744073709551615;w=86400");
}


static void
test_ratelimit_value_exact(void **state)
{
    char  buf[64];

    (void) state;

    assert_int_equal(vetting_ratelimit_value(buf, sizeof(buf), "burst", 0,
                                             30), 16);
    assert_string_equal(buf, "\"burst\";r=0;t=30");
}


static void
test_ratelimit_name_escaped(void **state)
{
    char  buf[64];

    (void) state;

    /* " and \ escaped; controls, DEL and non-ASCII left out */

    vetting_ratelimit_value(buf, sizeof(buf), "a\"b\\c\x01\x7f\xc3\xa9 d", 1,
                            2);
    assert_string_equal(buf, "\"a\\\"b\\\\c d\";r=1;t=2");

    vetting_ratelimit_value(buf, sizeof(buf), NULL, 1, 2);
    assert_string_equal(buf, "\"\";r=1;t=2");
}


static void
test_ratelimit_truncated(void **state)
{
    char  buf[8];

    (void) state;

    memset(buf, 'x', sizeof(buf));

    assert_int_equal(vetting_ratelimit_value(buf, 0, "burst", 1, 2), 0);
    assert_int_equal(buf[0], 'x');

    assert_int_equal(vetting_ratelimit_value(buf, 1, "burst", 1, 2), 0);
    assert_string_equal(buf, "");

    assert_int_equal(vetting_ratelimit_value(buf, 5, "burst", 1, 2), 4);
    assert_string_equal(buf, "\"bur");
    assert_int_equal(buf[5], 'x');
}


static void
test_format_time(void **state)
{
    char  buf[25];

    (void) state;

    assert_int_equal(vetting_format_time(T0, buf), 24);
    assert_string_equal(buf, "2025-03-01T14:22:05.123Z");

    vetting_format_time(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");

    vetting_format_time(-1, buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");

    vetting_format_time(-1000, buf);
    assert_string_equal(buf, "1969-12-31T23:59:59.000Z");

    vetting_format_time(-1001, buf);
    assert_string_equal(buf, "1969-12-31T23:59:58.999Z");

    vetting_format_time(951782400007LL, buf);
    assert_string_equal(buf, "2000-02-29T00:00:00.007Z");
}


static void
test_format_time_clamped(void **state)
{
    char  buf[25];

    (void) state;

    assert_int_equal(vetting_format_time(INT64_MIN, buf), 24);
    assert_string_equal(buf, "0001-01-01T00:00:00.000Z");

    assert_int_equal(vetting_format_time(INT64_MAX, buf), 24);
    assert_string_equal(buf, "9999-12-31T23:59:59.999Z");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_audit_refusal_exact),
        cmocka_unit_test(test_audit_block_exact),
        cmocka_unit_test(test_audit_dry_run_outcome_is_success),
        cmocka_unit_test(test_audit_unidentified_client),
        cmocka_unit_test(test_audit_no_entity_without_member_or_request),
        cmocka_unit_test(test_audit_request_entity_has_no_name),
        cmocka_unit_test(test_audit_details_follow_request_facts),
        cmocka_unit_test(test_audit_block_with_request_keeps_details_on_app),
        cmocka_unit_test(test_audit_block_of_unidentified_app),
        cmocka_unit_test(test_audit_invalid_utf8_in_path),
        cmocka_unit_test(test_audit_invalid_utf8_everywhere),
        cmocka_unit_test(test_audit_control_characters_escaped),
        cmocka_unit_test(test_audit_buffer_too_small),
        cmocka_unit_test(test_audit_huge_invalid_uri_refused),
        cmocka_unit_test(test_audit_bad_action_left_out),
        cmocka_unit_test(test_audit_bad_kind_refused),
        cmocka_unit_test(test_outcome_exact),
        cmocka_unit_test(test_outcome_minimal_exact),
        cmocka_unit_test(test_outcome_too_small_and_missing_code),
        cmocka_unit_test(test_outcome_diagnostics_repaired),
        cmocka_unit_test(test_oauth_error_exact),
        cmocka_unit_test(test_oauth_error_without_description),
        cmocka_unit_test(test_ratelimit_policy_exact),
        cmocka_unit_test(test_ratelimit_value_exact),
        cmocka_unit_test(test_ratelimit_name_escaped),
        cmocka_unit_test(test_ratelimit_truncated),
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_format_time_clamped)
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
