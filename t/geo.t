#!/usr/bin/perl

# Country blocking: the country of the client address nginx decided
# (after realip, trusted proxies only) from a MaxMind DB, in both common
# layouts (GeoIP2 "country" -> "iso_code", flat "country_code") and in
# IPv4 and IPv6 databases; the answers on the FHIR API and the OAuth
# endpoints; addresses the database does not know; IPv6 and IPv4-mapped
# IPv6 clients; $vetting_country; the AuditEvent of each refusal; and
# the "country" rule event, counted per proven app, else per address.
#
# The databases are built here with scripts/mkmmdb.pl, so every answer
# is known: 198.51.100.0/24 US, 203.0.113.0/24 DE, 192.0.2.0/24 PR,
# 2001:db8:1::/48 DE, 2001:db8:2::/48 US; the main database also has
# the loopback peers 127.0.0.2 DE, 127.0.0.3 US and ::1 DE.  127.0.0.1,
# 10.0.0.1 and 100.64.0.0/10 are in none of them.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use IO::Socket::IP;
use Time::HiRes qw(time);

use Test::More;
use Test::Vetting;
use Test::Vetting::Fake;

###############################################################################

my $t = Test::Vetting->new;

my $mkmmdb = "$FindBin::Bin/../scripts/mkmmdb.pl";

my @nets = qw(198.51.100.0/24=US 203.0.113.0/24=DE 192.0.2.0/24=PR);
my @nets6 = qw(2001:db8:1::/48=DE 2001:db8:2::/48=US);

# the main database: GeoIP2 layout, IPv6, and no ::ffff:0:0/96 alias, so
# that a mapped address is found only when it is looked up as IPv4
mkmmdb('main.mmdb', [qw(--layout geoip2 --ip-version 6 --no-alias)],
    @nets, @nets6, qw(127.0.0.2/32=DE 127.0.0.3/32=US ::1/128=DE));

mkmmdb('g4.mmdb', [qw(--layout geoip2 --ip-version 4)], @nets);
mkmmdb('g6.mmdb', [qw(--layout geoip2 --ip-version 6)], @nets, @nets6);
mkmmdb('f4.mmdb', [qw(--layout flat --ip-version 4)], @nets);
mkmmdb('f6.mmdb', [qw(--layout flat --ip-version 6)], @nets, @nets6);

# IPv6 loopback, for a listener on [::1]

my $has_v6 = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0,
    Proto => 'tcp', Listen => 1) ? 1 : 0;

# an IPv6 socket that IPv4 clients reach, as "listen [::]:80 ipv6only=off"
# does, bound to the loopback address only

my $has_dual = IO::Socket::IP->new(LocalHost => '::ffff:127.0.0.1',
    LocalPort => 0, Proto => 'tcp', Listen => 1, V6Only => 0) ? 1 : 0;

$t->run_upstream('as', authorization_server(patient => 'm-1'));
$t->run_upstream('fhir', fhir_server());

my $format = q{log_format geo 't=$http_x_test_id status=$status }
    . q{addr=$remote_addr country=$vetting_country }
    . q{decision=$vetting_decision rule=$vetting_rule }
    . q{identity=$vetting_identity app=$vetting_app';};

my $v6_server = !$has_v6 ? '' : <<'EOF';
    server {
        listen [::1]:%%PORT:v6%%;

        location /fhir/r4 {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }
EOF

my $dual_server = !$has_dual ? '' : <<'EOF';
    server {
        listen [::ffff:127.0.0.1]:%%PORT:dual%% ipv6only=off;

        location /fhir/r4 {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }
EOF

# the locations every gateway of this file has: the default allowed
# countries, the territories too, and unknown addresses denied

my $country_locations = <<'EOF';
        location /fhir/r4 {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /territories/fhir/r4 {
            vetting_endpoint fhir;
            vetting_countries US PR GU VI AS MP;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /strict/fhir/r4 {
            vetting_endpoint fhir;
            vetting_country_unknown deny;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
EOF

my $dual_listen = !$has_dual ? ''
    : "        listen [::ffff:127.0.0.1]:%%PORT:dualreject%% ipv6only=off;\n";

my $conf = <<'EOF';
%%BASE%%
worker_processes 2;

http {
    %%HTTP%%
    %%FORMAT%%
    access_log %%PREFIX%%/geo.log geo;

    vetting_geoip %%DIR%%/main.mmdb;
    vetting_audit_log %%PREFIX%%/audit.jsonl;
    vetting_gateway_id gw-geo;

    # the client address is the one a trusted proxy names
    server {
        listen 127.0.0.1:%%PORT:nginx%%;

        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;

%%COUNTRY_LOCATIONS%%

        location /nogeo/fhir/r4 {
            vetting_endpoint fhir;
            vetting_countries off;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /oauth2/authorize {
            vetting_endpoint authorize;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /oauth2/token {
            vetting_endpoint token;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }
    }

    # a header from a peer that is not a trusted proxy changes nothing
    server {
        listen 127.0.0.1:%%PORT:untrusted%%;

        set_real_ip_from 192.0.2.1;
        real_ip_header X-Forwarded-For;

        location /fhir/r4 {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }

    # two trusted proxies in a row: the last untrusted address decides
    server {
        listen 127.0.0.1:%%PORT:recursive%%;

        set_real_ip_from 127.0.0.1;
        set_real_ip_from 100.64.0.0/10;
        real_ip_header X-Forwarded-For;
        real_ip_recursive on;

        location /fhir/r4 {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }

    # the same without recursion: the last address decides
    server {
        listen 127.0.0.1:%%PORT:last%%;

        set_real_ip_from 127.0.0.1;
        set_real_ip_from 100.64.0.0/10;
        real_ip_header X-Forwarded-For;

        location /fhir/r4 {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }

    # IPv4 clients of an IPv6 socket arrive as ::ffff:a.b.c.d
%%DUAL%%
%%V6%%
    # calls from abroad suspend a proven app at the third
    server {
        listen 127.0.0.1:%%PORT:block%%;

        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;

        vetting_rule country threshold=3 window=1h action=block;

        location /fhir/r4 {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /oauth2/token {
            vetting_endpoint token;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }
    }

    # an address over the rule is refused everywhere the rule applies
    server {
        listen 127.0.0.1:%%PORT:reject%%;
%%DUALLISTEN%%

        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;

        vetting_rule country threshold=2 window=1m action=reject;

        location /fhir/r4 {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /open/fhir/r4 {
            vetting_endpoint fhir;
            vetting_countries off;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }
}
EOF

$conf =~ s/%%FORMAT%%/$format/;
$conf =~ s/%%COUNTRY_LOCATIONS%%\n/$country_locations/;
$conf =~ s/%%DUAL%%\n/$dual_server/;
$conf =~ s/%%DUALLISTEN%%\n/$dual_listen/;
$conf =~ s/%%V6%%\n/$v6_server/;

$t->write_conf($conf);

$t->run_nginx(wait_ports => [map { $t->port($_) }
    qw(nginx untrusted recursive last block reject),
    $has_dual ? qw(dual dualreject) : ()]);

my $port = $t->port('nginx');
my ($r, $e, $ev);

###############################################################################

# allowed and disallowed countries on the FHIR API

$r = get($port, '/fhir/r4/Patient/us-1', xff => '198.51.100.7', id => 'us');
is($r->status, 200, 'US passes');
like($r->body, qr/"resourceType":"Bundle"/, 'US answered by the FHIR server');
$e = access_entry($t, 'us', 'geo.log');
is($e->{country}, 'US', 'US $vetting_country');
is($e->{decision}, 'pass', 'US decision pass');
is($e->{addr}, '198.51.100.7', 'US $remote_addr from the trusted proxy');

$r = get($port, '/fhir/r4/Patient/de-1', xff => '203.0.113.7', id => 'de');
is($r->status, 403, 'DE 403');
is($r->header('Content-Type'), 'application/fhir+json',
    'DE answer is FHIR JSON');
is(outcome_of($r)->{code}, 'forbidden', 'DE OperationOutcome forbidden');
is(outcome_of($r)->{severity}, 'error', 'DE OperationOutcome error');
is(outcome_of($r)->{diagnostics}, 'requests from DE are not allowed',
    'DE OperationOutcome names the country');
$e = access_entry($t, 'de', 'geo.log');
is($e->{country}, 'DE', 'DE $vetting_country');
is($e->{decision}, 'reject', 'DE decision reject');
is($e->{rule}, 'country', 'DE $vetting_rule country');
ok(!grep({ $_->{path} eq '/fhir/r4/Patient/de-1' }
    $t->upstream_requests('fhir')), 'DE never reaches the FHIR server');

$r = get($port, '/nogeo/fhir/r4/Patient/de-2', xff => '203.0.113.7',
    id => 'nogeo');
is($r->status, 200, 'DE passes where vetting_countries is off');
is(access_entry($t, 'nogeo', 'geo.log')->{country}, 'DE',
    '$vetting_country where vetting_countries is off');

# the AuditEvent of the refusal

$ev = audit_of('audit.jsonl', '/fhir/r4/Patient/de-1');
ok($ev, 'DE AuditEvent written');
is(reason($ev), 'country', 'DE AuditEvent reason country');
is(detail($ev, 'country'), 'DE', 'DE AuditEvent country in entity detail');
is(detail($ev, 'http-status'), '403', 'DE AuditEvent status');
is($ev->{agent}[0]{network}{address}, '203.0.113.7',
    'DE AuditEvent network address');
is($ev->{outcome}, '4', 'DE AuditEvent outcome minor failure');

ok(!audit_of('audit.jsonl', '/fhir/r4/Patient/us-1'),
    'no AuditEvent for a request that passes');

# the OAuth endpoints answer in their own error form

my $authorize = '/oauth2/authorize?response_type=code&client_id=app-de'
    . '&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&state=s1';

$r = get($port, $authorize, xff => '203.0.113.7', id => 'authorize-de');
is($r->status, 403, 'authorize from DE 403');
is($r->header('Content-Type'), 'application/json',
    'authorize from DE answer is JSON');
is($r->json->{error}, 'access_denied', 'authorize from DE access_denied');
ok(!defined $r->header('Location'), 'authorize from DE not redirected');
is(access_entry($t, 'authorize-de', 'geo.log')->{country}, 'DE',
    'authorize from DE $vetting_country');

$ev = audit_of('audit.jsonl', '/oauth2/authorize');
is(reason($ev), 'country', 'authorize from DE AuditEvent reason');
is(detail($ev, 'country'), 'DE', 'authorize from DE AuditEvent country');

$r = get($port, $authorize, xff => '198.51.100.7');
is($r->status, 302, 'authorize from US redirected by the server');

$r = http_req($port, 'POST', '/oauth2/token', headers => [
    'Content-Type' => 'application/x-www-form-urlencoded',
    Authorization => basic_auth('app-de', 'secret'),
    'X-Forwarded-For' => '203.0.113.7', 'X-Test-Id' => 'token-de'],
    body => form_encode(grant_type => 'authorization_code', code => 'c-de',
        redirect_uri => 'https://app.example.com/cb'));
is($r->status, 403, 'token from DE 403');
is($r->json->{error}, 'access_denied', 'token from DE access_denied');
is($r->header('Cache-Control'), 'no-store', 'token from DE no-store');
ok(!grep({ ($_->{body} // '') =~ /code=c-de/ } $t->upstream_requests('as')),
    'token from DE never reaches the authorization server');

$ev = audit_of('audit.jsonl', '/oauth2/token');
is(reason($ev), 'country', 'token from DE AuditEvent reason');
is(detail($ev, 'country'), 'DE', 'token from DE AuditEvent country');

# more allowed countries

$r = get($port, '/fhir/r4/Patient/pr-1', xff => '192.0.2.7');
is($r->status, 403, 'PR refused under the default (US only)');

$r = get($port, '/territories/fhir/r4/Patient/pr-2', xff => '192.0.2.7',
    id => 'pr');
is($r->status, 200, 'PR passes with vetting_countries US PR GU VI AS MP');
is(access_entry($t, 'pr', 'geo.log')->{country}, 'PR', 'PR $vetting_country');

$r = get($port, '/territories/fhir/r4/Patient/de-3', xff => '203.0.113.7');
is($r->status, 403, 'DE refused with vetting_countries US PR GU VI AS MP');

# addresses the database does not know

$r = get($port, '/fhir/r4/Patient/lo-1', id => 'loopback');
is($r->status, 200, '127.0.0.1 (unknown) passes by default');
$e = access_entry($t, 'loopback', 'geo.log');
is($e->{country}, '', '127.0.0.1 $vetting_country empty');
is($e->{addr}, '127.0.0.1', '127.0.0.1 $remote_addr');

$r = get($port, '/fhir/r4/Patient/ten-1', xff => '10.0.0.1', id => 'ten');
is($r->status, 200, '10.0.0.1 (unknown) passes by default');
is(access_entry($t, 'ten', 'geo.log')->{country}, '',
    '10.0.0.1 $vetting_country empty');

$r = get($port, '/strict/fhir/r4/Patient/lo-2');
is($r->status, 403, '127.0.0.1 refused with vetting_country_unknown deny');
is(outcome_of($r)->{diagnostics},
    'requests from an unknown country are not allowed',
    'unknown refusal names no country');

$r = get($port, '/strict/fhir/r4/Patient/ten-2', xff => '10.0.0.1');
is($r->status, 403, '10.0.0.1 refused with vetting_country_unknown deny');

$ev = audit_of('audit.jsonl', '/strict/fhir/r4/Patient/ten-2');
is(reason($ev), 'country', 'unknown refusal AuditEvent reason');
is(detail($ev, 'country'), undef, 'unknown refusal AuditEvent no country');

$r = get($port, '/strict/fhir/r4/Patient/us-2', xff => '198.51.100.7');
is($r->status, 200, 'US passes with vetting_country_unknown deny');

###############################################################################

# realip: only a trusted proxy's header counts

$r = get($t->port('untrusted'), '/fhir/r4/Patient/spoof-1',
    xff => '203.0.113.7', id => 'spoof-de');
is($r->status, 200, 'untrusted peer: a DE header changes nothing');
$e = access_entry($t, 'spoof-de', 'geo.log');
is($e->{addr}, '127.0.0.1', 'untrusted peer: $remote_addr is the peer');
is($e->{country}, '', 'untrusted peer: country of the peer');

$r = get_via(local => '127.0.0.2', port => $t->port('untrusted'),
    path => '/fhir/r4/Patient/spoof-2', xff => '198.51.100.7',
    id => 'spoof-us');
is($r->status, 403, 'untrusted DE peer: a US header does not let it in');
$e = access_entry($t, 'spoof-us', 'geo.log');
is($e->{addr}, '127.0.0.2', 'untrusted DE peer: $remote_addr');
is($e->{country}, 'DE', 'untrusted DE peer: $vetting_country');

$r = get_via(local => '127.0.0.2', port => $port,
    path => '/fhir/r4/Patient/spoof-3', xff => '198.51.100.7');
is($r->status, 403, 'DE peer not in set_real_ip_from: header ignored');

$r = get_via(local => '127.0.0.3', port => $port,
    path => '/fhir/r4/Patient/peer-us');
is($r->status, 200, 'US peer without a header passes');

# real_ip_recursive, as nginx documents it: off takes the last address,
# on the last address that is not a trusted proxy

$r = get($t->port('recursive'), '/fhir/r4/Patient/rec-1',
    xff => '203.0.113.7, 100.64.0.9', id => 'rec-de');
is($r->status, 403, 'recursive: the client behind a trusted proxy decides');
is(access_entry($t, 'rec-de', 'geo.log')->{addr}, '203.0.113.7',
    'recursive: $remote_addr skips the trusted proxy');

$r = get($t->port('last'), '/fhir/r4/Patient/last-1',
    xff => '203.0.113.7, 100.64.0.9', id => 'last-de');
is($r->status, 200, 'not recursive: the last address (unknown) decides');
is(access_entry($t, 'last-de', 'geo.log')->{addr}, '100.64.0.9',
    'not recursive: $remote_addr is the last address');

$r = get($t->port('recursive'), '/fhir/r4/Patient/rec-2',
    xff => '198.51.100.7, 203.0.113.7');
is($r->status, 403,
    'recursive: a US address written left of a DE client is ignored');

$r = get($t->port('last'), '/fhir/r4/Patient/last-2',
    xff => '198.51.100.7, 203.0.113.7');
is($r->status, 403,
    'not recursive: a US address written left of a DE client is ignored');

$r = get($t->port('recursive'), '/fhir/r4/Patient/rec-3',
    xff => '203.0.113.7, 198.51.100.7');
is($r->status, 200, 'recursive: the first untrusted address from the right');

###############################################################################

# IPv6 clients

$r = get($port, '/fhir/r4/Patient/v6-de', xff => '2001:db8:1::7',
    id => 'v6-de');
is($r->status, 403, 'IPv6 DE 403');
$e = access_entry($t, 'v6-de', 'geo.log');
is($e->{country}, 'DE', 'IPv6 DE $vetting_country');
is($e->{addr}, '2001:db8:1::7', 'IPv6 DE $remote_addr');
is(audit_of('audit.jsonl', '/fhir/r4/Patient/v6-de')->{agent}[0]{network}
    {address}, '2001:db8:1::7', 'IPv6 DE AuditEvent address');

$r = get($port, '/fhir/r4/Patient/v6-us', xff => '2001:db8:2::7',
    id => 'v6-us');
is($r->status, 200, 'IPv6 US passes');
is(access_entry($t, 'v6-us', 'geo.log')->{country}, 'US',
    'IPv6 US $vetting_country');

$r = get($port, '/fhir/r4/Patient/v6-unknown', xff => '2001:db8:9::7');
is($r->status, 200, 'IPv6 unknown passes by default');

SKIP: {
    skip 'no IPv6 loopback', 3 if !$has_v6;

    $r = get_via(peer => '::1', port => $t->port('v6'),
        path => '/fhir/r4/Patient/v6-peer', id => 'v6-peer');
    is($r->status, 403, 'IPv6 peer ::1 (DE) 403');
    $e = access_entry($t, 'v6-peer', 'geo.log');
    is($e->{addr}, '::1', 'IPv6 peer $remote_addr');
    is($e->{country}, 'DE', 'IPv6 peer $vetting_country');
}

# IPv4-mapped IPv6 addresses are looked up, logged and keyed as IPv4

$r = get($port, '/fhir/r4/Patient/mapped-de', xff => '::ffff:203.0.113.7',
    id => 'mapped-de');
is($r->status, 403, 'mapped DE 403');
$e = access_entry($t, 'mapped-de', 'geo.log');
is($e->{country}, 'DE', 'mapped DE $vetting_country');
is($e->{addr}, '::ffff:203.0.113.7', 'mapped DE $remote_addr as nginx has it');
$ev = audit_of('audit.jsonl', '/fhir/r4/Patient/mapped-de');
is($ev->{agent}[0]{network}{address}, '203.0.113.7',
    'mapped DE AuditEvent address as IPv4');
is(detail($ev, 'country'), 'DE', 'mapped DE AuditEvent country');

$r = get($port, '/fhir/r4/Patient/mapped-us', xff => '::ffff:198.51.100.7');
is($r->status, 200, 'mapped US passes');

SKIP: {
    skip 'no dual-stack IPv6 sockets', 5 if !$has_dual;

    $r = get_via(local => '127.0.0.2', port => $t->port('dual'),
        path => '/fhir/r4/Patient/dual-de', id => 'dual-de');
    is($r->status, 403, 'dual-stack listener: IPv4 DE client 403');
    $e = access_entry($t, 'dual-de', 'geo.log');
    is($e->{addr}, '::ffff:127.0.0.2',
        'dual-stack listener: mapped $remote_addr');
    is($e->{country}, 'DE', 'dual-stack listener: $vetting_country');
    is(audit_of('audit.jsonl', '/fhir/r4/Patient/dual-de')->{agent}[0]
        {network}{address}, '127.0.0.2',
        'dual-stack listener: AuditEvent address IPv4');

    $r = get_via(local => '127.0.0.3', port => $t->port('dual'),
        path => '/fhir/r4/Patient/dual-us');
    is($r->status, 200, 'dual-stack listener: IPv4 US client passes');
}

###############################################################################

# counting: a proven app is suspended at its third call from abroad

my $block = $t->port('block');

$r = token_request($block, uri => '/oauth2/token', code => 'c-far',
    basic => ['far-app', 'far-secret'], id => 'far-token');
is($r->status, 200, 'far-app gets a token from home');
is(access_entry($t, 'far-token', 'geo.log')->{identity}, 'proven',
    'far-app proven');

my $token = 'AT-c-far';

for my $n (1, 2) {
    $r = get($block, "/fhir/r4/Patient/far-$n", xff => '203.0.113.7',
        token => $token, id => "far-$n");
    is($r->status, 403, "far-app call $n from DE 403");
}

is(access_entry($t, 'far-1', 'geo.log')->{app}, 'far-app',
    'far-app refusal names the app');

$r = get($block, '/fhir/r4/Patient/far-home-1', xff => '198.51.100.7',
    token => $token);
is($r->status, 200, 'far-app not suspended after two calls from DE');

$r = get($block, '/fhir/r4/Patient/far-3', xff => '203.0.113.7',
    token => $token);
is($r->status, 403, 'far-app call 3 from DE 403');

$r = get($block, '/fhir/r4/Patient/far-home-2', xff => '198.51.100.7',
    token => $token, id => 'far-home-2');
is($r->status, 401, 'far-app suspended: 401 even from the US');
like($r->header('WWW-Authenticate'), qr/error="invalid_token"/,
    'far-app suspended: invalid_token');
is(outcome_of($r)->{code}, 'security', 'far-app suspended: security');
$e = access_entry($t, 'far-home-2', 'geo.log');
is($e->{rule}, 'blocked', 'far-app suspended: $vetting_rule blocked');
is($e->{country}, 'US', 'far-app suspended: $vetting_country still known');
is(detail(audit_of('audit.jsonl', '/fhir/r4/Patient/far-home-2'), 'country'),
    'US', 'far-app suspended: AuditEvent country still known');

($ev) = grep { ($_->{outcomeDesc} // '') =~ /suspended/
    && block_app($_) eq 'far-app' } $t->audit_events('audit.jsonl');
ok($ev, 'far-app suspension AuditEvent');
is(block_detail($ev, 'rule'), 'country threshold=3 window=1h action=block',
    'far-app suspension AuditEvent names the rule');
like($t->error_log, qr/app "far-app" suspended in scope "\*": rule "country/,
    'far-app suspension logged');

# unidentified clients are counted per address; only apps are suspended

for my $n (1 .. 3) {
    $r = get($block, "/fhir/r4/Patient/anon-$n", xff => '203.0.113.40');
    is($r->status, 403, "unidentified call $n from DE 403");
}

my $reached = qr/rule "country threshold=3 window=1h action=block" reached/;

like($t->error_log,
    qr/$reached by unidentified client "203\.0\.113\.40" \(3 events\)/,
    'unidentified client counted per address');

$r = get($block, '/fhir/r4/Patient/anon-us', xff => '198.51.100.40');
is($r->status, 200, 'another address of the same client is not counted');

# an address over a rule with action=reject is refused while over

my $reject = $t->port('reject');

for my $n (1, 2) {
    $r = get($reject, "/fhir/r4/Patient/rj-$n", xff => '203.0.113.50');
    is(outcome_of($r)->{diagnostics}, 'requests from DE are not allowed',
        "address call $n refused for its country");
}

$r = get($reject, '/fhir/r4/Patient/rj-3', xff => '203.0.113.50',
    id => 'rj-3');
is($r->status, 403, 'address over the rule 403');
is(outcome_of($r)->{diagnostics}, 'refused while over the vetting rule '
    . '"country threshold=2 window=1m action=reject"',
    'address over the rule refused for the rule');

$r = get($reject, '/open/fhir/r4/Patient/rj-4', xff => '203.0.113.50');
is($r->status, 403, 'address over the rule refused where DE is allowed');

$r = get($reject, '/open/fhir/r4/Patient/rj-5', xff => '203.0.113.51');
is($r->status, 200, 'another DE address passes where DE is allowed');

like($t->error_log,
    qr/reached by client "203\.0\.113\.50" \(2 events\), refusing it/,
    'address over the rule logged');

# one key for an address in IPv4 and in IPv4-mapped form

$r = get($reject, '/fhir/r4/Patient/km-1', xff => '203.0.113.60');
$r = get($reject, '/fhir/r4/Patient/km-2', xff => '::ffff:203.0.113.60');
$r = get($reject, '/open/fhir/r4/Patient/km-3', xff => '203.0.113.60');
is(outcome_of($r)->{diagnostics}, 'refused while over the vetting rule '
    . '"country threshold=2 window=1m action=reject"',
    'IPv4 and mapped forms of an address counted together');

SKIP: {
    skip 'no dual-stack IPv6 sockets', 1 if !$has_dual;

    $r = get_via(local => '127.0.0.2', port => $reject,
        path => '/fhir/r4/Patient/kd-1');
    $r = get_via(local => '127.0.0.2', port => $t->port('dualreject'),
        path => '/fhir/r4/Patient/kd-2');
    $r = get_via(local => '127.0.0.2', port => $reject,
        path => '/open/fhir/r4/Patient/kd-3');
    is(outcome_of($r)->{diagnostics}, 'refused while over the vetting rule '
        . '"country threshold=2 window=1m action=reject"',
        'a client on IPv4 and dual-stack listeners counted together');
}

# one AuditEvent per refusal for a country or a country rule

is(scalar(grep { reason($_) eq 'country' } $t->audit_events('audit.jsonl')),
    scalar(grep { $_->{decision} eq 'reject' && $_->{rule} eq 'country' }
        access_entries($t, 'geo.log')),
    'one AuditEvent per country refusal');

###############################################################################

# both layouts, IPv4 and IPv6 databases, the country path found or named

my %variants = (
    g4 => 'g4.mmdb country_path=country.iso_code',
    g6 => 'g6.mmdb',
    f4 => 'f4.mmdb',
    f6 => 'f6.mmdb country_path=country_code',
);

for my $name (sort keys %variants) {
    $t->run_nginx(name => $name,
        conf => variant_conf($name, $variants{$name}));
}

for my $name (sort keys %variants) {
    my $p = $t->port($name);
    my $v6 = $name =~ /6/;
    my $log = "$name/geo.log";

    $r = get($p, '/fhir/r4/Patient/1', xff => '198.51.100.7', id => 'us');
    is($r->status, 200, "$name: US passes");
    is(access_entry($t, 'us', $log)->{country}, 'US', "$name: US country");

    $r = get($p, '/fhir/r4/Patient/1', xff => '203.0.113.7', id => 'de');
    is($r->status, 403, "$name: DE 403");
    is(outcome_of($r)->{code}, 'forbidden', "$name: DE forbidden");
    is(access_entry($t, 'de', $log)->{country}, 'DE', "$name: DE country");

    $r = get($p, '/fhir/r4/Patient/1', xff => '192.0.2.7');
    is($r->status, 403, "$name: PR refused by default");

    $r = get($p, '/territories/fhir/r4/Patient/1', xff => '192.0.2.7');
    is($r->status, 200, "$name: PR passes among the territories");

    $r = get($p, '/fhir/r4/Patient/1', xff => '10.0.0.1', id => 'unknown');
    is($r->status, 200, "$name: unknown passes by default");
    is(access_entry($t, 'unknown', $log)->{country}, '',
        "$name: unknown country empty");

    $r = get($p, '/strict/fhir/r4/Patient/1', xff => '10.0.0.1');
    is($r->status, 403, "$name: unknown refused with deny");

    $r = get($p, '/fhir/r4/Patient/1', xff => '::ffff:203.0.113.7',
        id => 'mapped');
    is($r->status, 403, "$name: mapped DE 403");
    is(access_entry($t, 'mapped', $log)->{country}, 'DE',
        "$name: mapped DE country");

    $r = get($p, '/fhir/r4/Patient/1', xff => '::ffff:198.51.100.7');
    is($r->status, 200, "$name: mapped US passes");

    $r = get($p, '/fhir/r4/Patient/1', xff => '2001:db8:1::7', id => 'v6');

    if ($v6) {
        is($r->status, 403, "$name: IPv6 DE 403");
        is(access_entry($t, 'v6', $log)->{country}, 'DE',
            "$name: IPv6 DE country");

        $r = get($p, '/fhir/r4/Patient/1', xff => '2001:db8:2::7');
        is($r->status, 200, "$name: IPv6 US passes");

    } else {
        is($r->status, 200, "$name: IPv6 in an IPv4 database passes "
            . '(unknown)');
        is(access_entry($t, 'v6', $log)->{country}, '',
            "$name: IPv6 in an IPv4 database has no country");

        $r = get($p, '/strict/fhir/r4/Patient/1', xff => '2001:db8:1::7');
        is($r->status, 403, "$name: IPv6 in an IPv4 database refused with "
            . 'deny');
    }

    unlike($t->error_log($name), qr/country lookup/,
        "$name: no lookup errors logged");
}

###############################################################################

$t->done_testing;

###############################################################################

sub mkmmdb {
    my ($file, $options, @networks) = @_;

    system($^X, $mkmmdb, @$options, '--out', $t->dir . "/$file",
        @networks) == 0 or die "mkmmdb.pl $file failed\n";
}


sub variant_conf {
    my ($name, $geoip) = @_;

    my $text = <<"EOF";
%%BASE%%
worker_processes 1;

http {
    %%HTTP%%
    %%FORMAT%%
    access_log %%PREFIX%%/geo.log geo;

    vetting_geoip %%DIR%%/$geoip;

    server {
        listen 127.0.0.1:%%PORT:$name%%;

        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;

%%COUNTRY_LOCATIONS%%
    }
}
EOF

    $text =~ s/%%FORMAT%%/$format/;
    $text =~ s/%%COUNTRY_LOCATIONS%%\n/$country_locations/;

    return $text;
}


# GET through the harness client (from 127.0.0.1)
sub get {
    my ($p, $path, %o) = @_;

    return http_req($p, 'GET', $path, headers => [headers(%o)]);
}


sub headers {
    my (%o) = @_;

    my @h;

    push @h, 'X-Forwarded-For' => $o{xff} if defined $o{xff};
    push @h, Authorization => "Bearer $o{token}" if defined $o{token};
    push @h, 'X-Test-Id' => $o{id} if defined $o{id};

    return @h;
}


# GET from a chosen local address, or to an IPv6 peer
sub get_via {
    my (%o) = @_;

    my $s = IO::Socket::IP->new(
        PeerHost  => $o{peer} // '127.0.0.1',
        PeerPort  => $o{port},
        LocalHost => $o{local},
        Proto     => 'tcp',
        Timeout   => 5,
    ) or return parse_response('');

    local $SIG{PIPE} = 'IGNORE';

    syswrite $s, Test::Vetting::HTTP::request('GET', $o{path},
        headers => [headers(%o)]);

    my ($buf, $sel, $deadline) = ('', IO::Select->new($s), time + 10);

    while ($sel->can_read(($deadline - time) > 0 ? $deadline - time : 0)) {
        last if !sysread $s, $buf, 65536, length $buf;
    }

    close $s;

    return parse_response($buf);
}


# the AuditEvent of the one request to $path
sub audit_of {
    my ($file, $path) = @_;

    my @found = grep {
        grep { ($_->{description} // '') =~ m{ \Q$path\E(?:\?|$)} }
            @{ $_->{entity} // [] }
    } $t->audit_events($file);

    return @found == 1 ? $found[0] : undef;
}


sub reason {
    my ($ev) = @_;

    my ($c) = grep { $_->{system} eq 'urn:ngx-vetting:reason' }
        @{ $ev->{subtype} // [] };

    return $c && $c->{code};
}


# a detail of the request entity
sub detail {
    my ($ev, $type) = @_;

    for my $entity (@{ $ev->{entity} // [] }) {
        next if !defined $entity->{description};

        for (@{ $entity->{detail} // [] }) {
            return $_->{valueString} if $_->{type} eq $type;
        }
    }

    return undef;
}


# the app and the details of a suspension's entity
sub block_app {
    my ($ev) = @_;

    for my $entity (@{ $ev->{entity} // [] }) {
        my $id = $entity->{what}{identifier} or next;
        return $id->{value};
    }

    return '';
}


sub block_detail {
    my ($ev, $type) = @_;

    for my $entity (@{ $ev->{entity} // [] }) {
        next if !$entity->{what}{identifier};

        for (@{ $entity->{detail} // [] }) {
            return $_->{valueString} if $_->{type} eq $type;
        }
    }

    return undef;
}

###############################################################################
