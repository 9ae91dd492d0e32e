#!/usr/bin/perl

# A full zone drops the least recently used entries, but what only the
# zone knows about an app must outlive a flood of per-address entries:
# without Redis a learned token evicted is a token no gateway knows, so
# a suspended app whose token is pushed out of the zone would reach the
# FHIR server again, and an app in good standing would no longer be
# counted.  A client with many addresses (IPv6, or a trusted proxy's
# X-Forwarded-For) must not be able to do that.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Test::Vetting;
use Test::Vetting::Fake;
use Time::HiRes qw(time);

###############################################################################

my $t = Test::Vetting->new;

$t->run_upstream('as', authorization_server());
$t->run_upstream('fhir', fhir_server());

$t->write_conf(<<'EOF' =~ s/%%FORMAT%%/vetting_log_format()/er);
%%BASE%%
worker_processes 1;

http {
    %%HTTP%%
    %%FORMAT%%
    access_log %%PREFIX%%/vetting.log vetting;

    vetting_zone vetting:256k;

    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;

    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        server_name localhost;

        vetting_rule write threshold=2 window=1h action=block;
        vetting_rule unknown_token threshold=50 window=1m action=reject;

        location /token {
            vetting_endpoint token;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /fhir/r4 {
            vetting_endpoint fhir;
            vetting_rate 50r/s burst=200 per=address name=address;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }
}
EOF

$t->run_nginx;

my $port = $t->port('nginx');
my $r;

sub fhir {
    my ($token, $method, $id) = @_;

    return http_req($port, $method // 'GET', '/fhir/r4/Patient/m-12345',
        headers => [Authorization => "Bearer $token",
            defined $id ? ('X-Test-Id' => $id) : ()]);
}

# app-s suspended; app-g in good standing

is(token_request($port, code => 'c-s', client_id => 'app-s',
    secret => 's-secret')->status, 200, 'token of app-s');
is(token_request($port, code => 'c-g', client_id => 'app-g',
    secret => 'g-secret')->status, 200, 'token of app-g');

is(fhir('AT-c-s', 'DELETE')->status, 405, 'write 1 of app-s') for 1 .. 2;
is(fhir('AT-c-s')->status, 401, 'app-s suspended');
is(fhir('AT-c-g', 'GET', 'g-before')->status, 200, 'app-g reads');

# a flood from 6000 addresses, each refused a write with a guessed token

my $start = time;

for my $batch (0 .. 59) {
    my $raw = '';

    for my $i (1 .. 100) {
        my $n = $batch * 100 + $i;
        my $addr = sprintf '10.%d.%d.%d', $n >> 16, ($n >> 8) & 255,
            $n & 255;

        $raw .= "DELETE /fhir/r4/Patient/m-1 HTTP/1.1\r\nHost: localhost\r\n"
            . "X-Forwarded-For: $addr\r\nAuthorization: Bearer guess-$n\r\n"
            . ($i == 100 ? "Connection: close\r\n" : '') . "\r\n";
    }

    http($port, $raw, timeout => 30);
}

note(sprintf 'flood: %.1f s', time - $start);

# what the zone knew about the apps is still known

$r = fhir('AT-c-s', 'GET', 's-after');
is($r->status, 401, 'app-s still suspended after the flood');
is(scalar(grep { ($_->{headers}{'x-test-id'} // '') eq 's-after' }
    $t->upstream_requests('fhir')), 0,
    'suspended app never reaches the server after the flood');

$r = fhir('AT-c-g', 'GET', 'g-after');
is($r->status, 200, 'app-g reads after the flood');
is(access_entry($t, 'g-after')->{identity}, 'proven',
    'app-g still proven after the flood');

$t->done_testing;

###############################################################################
