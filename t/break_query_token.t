#!/usr/bin/perl

# RFC 6750 2.3: a Bearer token may also come as the "access_token"
# parameter of the query.  A FHIR server that takes it there must not
# be reached by a suspended app that moves its token from the header to
# the query, and the app's writes sent that way count against it.

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

$t->write_conf(<<'EOF' =~ s/%%FORMAT%%/vetting_log_format()/er);
%%BASE%%
worker_processes 1;

http {
    %%HTTP%%
    %%FORMAT%%
    access_log %%PREFIX%%/vetting.log vetting;

    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        server_name localhost;

        vetting_rule write threshold=2 window=1h action=block;

        location /token {
            vetting_endpoint token;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /fhir/r4 {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }
}
EOF

$t->run_nginx;

my $port = $t->port('nginx');
my $r;

sub seen {
    my ($id) = @_;

    return scalar grep { ($_->{headers}{'x-test-id'} // '') eq $id }
        $t->upstream_requests('fhir');
}

$r = token_request($port, code => 'c-q', client_id => 'app-q',
    secret => 'app-q-secret');
is($r->status, 200, 'token learned');

# a read with the token in the query is the app's

$r = http_req($port, 'GET', '/fhir/r4/Patient/m-12345?access_token=AT-c-q',
    headers => ['X-Test-Id' => 'q-read']);
is($r->status, 200, 'read with the token in the query passes');

my %e = %{ access_entry($t, 'q-read') };
is($e{app}, 'app-q', 'query token names the app');
is($e{identity}, 'proven', 'query token proven');
is($e{token}, token_id('AT-c-q'), 'query token id');

# two writes that way suspend the app

for my $n (1, 2) {
    $r = http_req($port, 'DELETE', "/fhir/r4/Patient/m-12345?_format=json"
        . "&access_token=AT-c-q", headers => ['X-Test-Id' => "q-write-$n"]);
    is($r->status, 405, "write $n with the token in the query refused");
}

like($t->error_log, qr/app "app-q" suspended/,
    'writes with the token in the query suspend the app');

# and the suspended app gets nothing with the token in the query

$r = http_req($port, 'GET', '/fhir/r4/Patient/m-12345?access_token=AT-c-q',
    headers => ['X-Test-Id' => 'q-suspended']);
is($r->status, 401, 'suspended app refused with the token in the query');
is(seen('q-suspended'), 0, 'suspended query token never reaches the server');

$r = http_req($port, 'POST', '/fhir/r4/Patient/_search',
    headers => ['Content-Type' => 'application/x-www-form-urlencoded',
        'X-Test-Id' => 'q-form'],
    body => 'name=x&access_token=AT-c-q');
is($r->status, 401, 'suspended app refused with the token in a form');
is(seen('q-form'), 0, 'suspended form token never reaches the server');

$t->done_testing;

###############################################################################
