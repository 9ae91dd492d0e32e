#!/usr/bin/perl

# A suspended app gets no fresh tokens, whatever the size of its refresh
# request.  An app that authenticates in the form (client_secret_post,
# or a public app's client_id) and pads the body past the 64 KiB the
# module reads is neither named nor is its refresh token looked up: an
# authorization server that takes such bodies issues it new tokens,
# which no gateway learns, and the FHIR server accepts them.
#
# A token request too large to vet is refused with 413 invalid_request.

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

$t->write_conf(<<'EOF');
%%BASE%%
worker_processes 1;

http {
    %%HTTP%%

    client_max_body_size 1m;

    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        server_name localhost;

        vetting_rule write threshold=1 window=1h action=block;

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

sub refresh {
    my ($pad) = @_;

    return http_req($port, 'POST', '/token',
        headers => ['Content-Type' => 'application/x-www-form-urlencoded'],
        body => form_encode(grant_type => 'refresh_token',
            refresh_token => 'RT-c-p', client_id => 'app-p',
            client_secret => 'p-secret', pad => 'x' x $pad));
}

is(token_request($port, code => 'c-p', client_id => 'app-p',
    secret => 'p-secret')->status, 200, 'token of app-p');
is(http_req($port, 'DELETE', '/fhir/r4/Patient/m-1',
    headers => [Authorization => 'Bearer AT-c-p'])->status, 405, 'write');
is(http_get($port, '/fhir/r4/Patient/m-1', Authorization => 'Bearer AT-c-p')
    ->status, 401, 'app-p suspended');

is(refresh(10)->status, 401, 'refresh of the suspended app refused');

$r = refresh(70000);
is($r->status, 413, 'padded refresh of the suspended app refused');

# what the server issued for it is served

is(http_get($port, '/fhir/r4/Patient/m-1',
    Authorization => 'Bearer AT-RT-c-p')->status, 401,
    'a token issued to the suspended app is refused')
    if $r->status == 200;

$t->done_testing;

###############################################################################
