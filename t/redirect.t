#!/usr/bin/perl

# One client request is vetted and counted once, whatever internal
# redirects follow (try_files, index, error_page, rewrite ... last,
# named locations), and subrequests (auth_request) are not vetted.  Each
# case has a rate of burst 2 that a second vetting of the same request
# would spend twice.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Test::Vetting;
use Test::Vetting::Fake;

###############################################################################

my $t = Test::Vetting->new;

$t->run_upstream('as', authorization_server());
$t->run_upstream('fhir', fhir_server());
$t->run_upstream('authz', { status => 200, body => '' });

$t->write_file('static/ix/r4/index.json',
    '{"resourceType":"CapabilityStatement"}');

$t->write_conf(<<'EOF' =~ s/%%FORMAT%%/vetting_log_format()/er);
%%BASE%%
worker_processes 2;

http {
    %%HTTP%%
    %%FORMAT%%
    access_log %%PREFIX%%/vetting.log vetting;

    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        server_name localhost;

        recursive_error_pages on;

        vetting_rule write threshold=2 window=1h action=block;

        location /token {
            vetting_endpoint token;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        # try_files to a location

        location /tf/r4/ {
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=2 name=tf;
            root %%DIR%%/static;
            try_files $uri /up/tf$uri;
        }

        location /up/ {
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=2 name=tf;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        # try_files to a named location

        location /nl/r4/ {
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=2 name=nl;
            root %%DIR%%/static;
            try_files $uri @fhir;
        }

        location @fhir {
            vetting_endpoint fhir base=/nl/r4;
            vetting_rate 1r/m burst=2 name=nl;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        # index

        location /ix/r4/ {
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=2 name=ix;
            root %%DIR%%/static;
            index index.json;
        }

        # error_page to a vetted location, then rewrite ... last

        location /ep/r4/ {
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=2 per=address name=ep;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
            proxy_intercept_errors on;
            error_page 404 = /err/status/502;
        }

        location /err/ {
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=2 per=address name=ep;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
            proxy_intercept_errors on;
            error_page 502 = /again;
        }

        location = /again {
            rewrite ^ /final/r4/metadata last;
        }

        location /final/r4/ {
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=2 per=address name=ep;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        # error_page to a named location

        location /en/r4/ {
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=2 per=address name=en;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
            proxy_intercept_errors on;
            error_page 404 = @missing;
        }

        location @missing {
            vetting_endpoint fhir base=/en/r4;
            vetting_rate 1r/m burst=2 per=address name=en;
            rewrite ^ /en/r4/metadata break;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        # a refused write with error_page for its status

        location /w/r4/ {
            vetting_endpoint fhir;
            error_page 405 = /w/r4/Patient/m-12345;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        # rewrite ... last into a vetted location

        location /rw/ {
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=2 per=address name=rw;
            rewrite ^/rw/(.*)$ /final/rw/$1 last;
        }

        location /final/rw/ {
            vetting_endpoint fhir base=/final/rw;
            vetting_rate 1r/m burst=2 per=address name=rw;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        # auth_request: the subrequest is not vetted

        location /ar/r4/ {
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=2 per=address name=ar;
            auth_request /auth;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location = /auth {
            internal;
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=2 per=address name=ar;
            proxy_pass http://127.0.0.1:%%PORT:authz%%/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
    }
}
EOF

$t->run_nginx;

my $port = $t->port('nginx');
my ($r, %e);

for my $app (qw(tf nl ix w)) {
    $r = token_request($port, code => "c-$app", client_id => "app-$app");
    is($r->status, 200, "token of app-$app");
}

sub get {
    my ($id, $uri, $app) = @_;

    return http_get($port, $uri, 'X-Test-Id' => $id,
        $app ? (Authorization => "Bearer AT-c-$app") : ());
}

sub seen {
    my ($name, $id) = @_;

    return scalar grep { ($_->{headers}{'x-test-id'} // '') eq $id }
        $t->upstream_requests($name);
}

# try_files

for my $n (1 .. 2) {
    $r = get("tf-$n", '/tf/r4/Patient/m-12345', 'tf');
    is($r->status, 200, "try_files $n passes");
}

is(($t->upstream_requests('fhir'))[-1]{path}, '/up/tf/tf/r4/Patient/m-12345',
    'try_files redirected');

%e = %{ access_entry($t, 'tf-2') };
is($e{app}, 'app-tf', 'try_files app kept');
is($e{identity}, 'proven', 'try_files identity kept');
is($e{decision}, 'pass', 'try_files decision kept');
is($e{uri}, '/up/tf/tf/r4/Patient/m-12345', 'try_files logged after redirect');

$r = get('tf-3', '/tf/r4/Patient/m-12345', 'tf');
is($r->status, 429, 'try_files third request over the rate');
is(seen('fhir', 'tf-3'), 0, 'try_files refused never proxied');

# try_files to a named location

for my $n (1 .. 2) {
    $r = get("nl-$n", '/nl/r4/Patient/m-12345', 'nl');
    is($r->status, 200, "named location $n passes");
}

%e = %{ access_entry($t, 'nl-2') };
is($e{app}, 'app-nl', 'named location app kept');
is($e{identity}, 'proven', 'named location identity kept');

$r = get('nl-3', '/nl/r4/Patient/m-12345', 'nl');
is($r->status, 429, 'named location third request over the rate');

# index

for my $n (1 .. 2) {
    $r = get("ix-$n", '/ix/r4/', 'ix');
    is($r->status, 200, "index $n passes");
    is($r->body, '{"resourceType":"CapabilityStatement"}', "index $n body");
}

%e = %{ access_entry($t, 'ix-2') };
is($e{uri}, '/ix/r4/index.json', 'index redirected');
is($e{identity}, 'proven', 'index identity kept');

$r = get('ix-3', '/ix/r4/', 'ix');
is($r->status, 429, 'index third request over the rate');

# error_page to a vetted location, whose error_page rewrites into another

for my $n (1 .. 2) {
    $r = get("ep-$n", '/ep/r4/Patient/missing');
    is($r->status, 200, "error_page $n answered by the last location");
    like($r->body, qr{"x-path":"/final/r4/metadata"}, "error_page $n body");
}

is(seen('fhir', 'ep-2'), 3, 'error_page chain proxied three times');

%e = %{ access_entry($t, 'ep-2') };
is($e{uri}, '/final/r4/metadata', 'error_page chain logged at its end');
is($e{decision}, 'pass', 'error_page chain decision');
is($e{interaction}, 'read', 'error_page chain interaction of the first');

$r = get('ep-3', '/ep/r4/Patient/missing');
is($r->status, 429, 'error_page third request over the rate');
is(seen('fhir', 'ep-3'), 0, 'error_page refused never proxied');

# error_page to a named location

for my $n (1 .. 2) {
    $r = get("en-$n", '/en/r4/missing/2');
    is($r->status, 200, "error_page named $n passes");
}

$r = get('en-3', '/en/r4/missing/2');
is($r->status, 429, 'error_page named third request over the rate');

# rewrite ... last

for my $n (1 .. 2) {
    $r = get("rw-$n", '/rw/Patient/m-1');
    is($r->status, 200, "rewrite $n passes");
}

is(($t->upstream_requests('fhir'))[-1]{path}, '/final/rw/Patient/m-1',
    'rewrite redirected');

$r = get('rw-3', '/rw/Patient/m-1');
is($r->status, 429, 'rewrite third request over the rate');

# auth_request

for my $n (1 .. 2) {
    $r = get("ar-$n", '/ar/r4/Patient/m-1');
    is($r->status, 200, "auth_request $n passes");
    is(seen('authz', "ar-$n"), 1, "auth_request $n asked once");
}

$r = get('ar-3', '/ar/r4/Patient/m-1');
is($r->status, 429, 'auth_request third request over the rate');
is(seen('authz', 'ar-3'), 0, 'auth_request not asked when refused');

# a refused write is counted once: the rule needs two

$r = http_req($port, 'PUT', '/w/r4/Patient/m-12345',
    headers => [Authorization => 'Bearer AT-c-w', 'X-Test-Id' => 'w-1'],
    body => '{"resourceType":"Patient"}');
is($r->status, 405, 'write refused');
is(outcome_of($r)->{code}, 'forbidden', 'write refused by the module');
is(seen('fhir', 'w-1'), 0, 'write never proxied');

$r = get('w-read', '/w/r4/Patient/m-12345', 'w');
is($r->status, 200, 'one write does not suspend');
unlike($t->error_log, qr/app "app-w" suspended/, 'app-w not suspended');

$r = http_req($port, 'DELETE', '/w/r4/Patient/m-12345',
    headers => [Authorization => 'Bearer AT-c-w', 'X-Test-Id' => 'w-2']);
is($r->status, 405, 'second write refused');
like($t->error_log, qr/\Q$_\E/, 'second write suspends')
    for 'app "app-w" suspended in scope "*": rule '
    . '"write threshold=2 window=1h action=block" reached (2 events)';

$r = get('w-read-2', '/w/r4/Patient/m-12345', 'w');
is($r->status, 401, 'suspended after the second write');

is(scalar(() = $t->error_log =~ /suspended in scope/g), 1,
    'one suspension');

$t->done_testing;

###############################################################################
