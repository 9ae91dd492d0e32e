#!/usr/bin/perl

# A suspended app gets no code: not with a GET of the authorization
# endpoint, and not with a POST of the same request as a form (OpenID
# Connect Core 3.1.2.1: the authorization endpoint takes GET and POST,
# and oidc-provider, the demo's server, serves both).

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

# the server takes the parameters from the query of a GET and from the
# form of a POST, as OpenID Connect servers do

my $as = authorization_server();

$t->run_upstream('as', sub {
    my ($r) = @_;

    if ($r->{method} eq 'POST' && $r->{path} =~ m{/authorize$}) {
        my %f = form_decode($r->{body});

        return { status => 302, headers => { Location =>
            'https://app.example.com/cb?code=code-' . pct($f{client_id}
                // 'none') . '&state=' . pct($f{state} // 's') } };
    }

    return $as->($r);
});
$t->run_upstream('fhir', fhir_server());

$t->write_conf(<<'EOF');
%%BASE%%
worker_processes 1;

http {
    %%HTTP%%

    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        server_name localhost;

        vetting_rule write threshold=1 window=1h action=block;

        location /authorize {
            vetting_endpoint authorize;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

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
my $form = 'application/x-www-form-urlencoded';
my $r;

# app-s is suspended by one proven write

$r = token_request($port, code => 'c-s', client_id => 'app-s',
    secret => 'app-s-secret');
is($r->status, 200, 'token of app-s');

$r = http_req($port, 'DELETE', '/fhir/r4/Patient/m-1',
    headers => [Authorization => 'Bearer AT-c-s']);
is($r->status, 405, 'write of app-s refused');

$r = http_get($port, '/fhir/r4/Patient/m-1',
    Authorization => 'Bearer AT-c-s');
is($r->status, 401, 'app-s suspended');

my $query = 'response_type=code&client_id=app-s&state=st-1'
    . '&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb';

# GET: refused, as the README says

$r = http_get($port, "/authorize?$query");
is($r->status, 403, 'get authorize of a suspended app refused');

# POST: the same request as a form

my $seen = () = $t->upstream_requests('as');

$r = http_req($port, 'POST', '/authorize',
    headers => ['Content-Type' => $form], body => $query);

is($r->status, 403, 'post authorize of a suspended app refused');
is(($r->json // {})->{error}, 'unauthorized_client',
    'post authorize error unauthorized_client');
ok(!defined $r->header('Location'), 'post authorize no redirect');
is(scalar(() = $t->upstream_requests('as')), $seen,
    'post authorize never reaches the server');

# a POST of an app in good standing still passes, with its body

$r = http_req($port, 'POST', '/authorize',
    headers => ['Content-Type' => $form],
    body => 'response_type=code&client_id=app-ok&state=st-2');
is($r->status, 302, 'post authorize of another app passes');
is(($t->upstream_requests('as'))[-1]{body},
    'response_type=code&client_id=app-ok&state=st-2',
    'post authorize body unchanged');

$t->done_testing;

###############################################################################
