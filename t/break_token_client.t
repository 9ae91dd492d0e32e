#!/usr/bin/perl

# The client of a token request is the client the authorization server
# authenticates.  oidc-provider, the demo's server, reads HTTP Basic
# with Node's Buffer.from(value, "base64"), which skips bytes outside
# the alphabet, stops at "=" and ignores leftover bits: credentials
# spelled that way are accepted there, and the tokens they get must
# still be learned for their app, or the app is never counted and never
# suspended; so with client assertions, which jose decodes with the
# same Buffer.  And a suspended app must not get fresh tokens by padding
# its refresh request past the size the module reads.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64);
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

    client_max_body_size 1m;

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
my $form = 'application/x-www-form-urlencoded';
my $r;

sub token {
    my ($id, $auth, $body) = @_;

    return http_req($port, 'POST', '/token', headers => ['Content-Type' =>
        $form, defined $auth ? (Authorization => $auth) : (),
        'X-Test-Id' => $id], body => $body);
}

# Basic credentials of app-n ("app-n:n-secret", 14 bytes: the last
# group has leftover bits) as Node reads them

my $b64 = encode_base64('app-n:n-secret', '');      # YXBwLW46bi1zZWNyZXQ=
(my $bits = $b64) =~ s/Q=$/R/;                       # leftover bits set

(my $url = encode_base64('app-u:u?>secret', '')) =~ tr{+/}{-_};

for my $case (['trailing bytes', "Basic $b64!!"],
    ['a dot inside', 'Basic ' . substr($b64, 0, 4) . '.' . substr($b64, 4)],
    ['leftover bits', "Basic $bits"],
    ['padding twice', "Basic $b64="], ['url-safe alphabet', "Basic $url",
        'app-u'])
{
    my ($name, $auth, $app) = @$case;
    my $code = "c-$name" =~ s/ /-/gr;

    $r = token($code, $auth, "grant_type=authorization_code&code=$code");
    is($r->status, 200, "$name: token issued");

    my %e = %{ access_entry($t, $code) };
    is($e{app}, $app // 'app-n', "$name: the app is named");
    is($e{identity}, 'proven', "$name: the app is proven");
}

# a client assertion whose payload Node's base64url decoder reads
# (jose checks the signature over the parts as sent)

my $jwt = jws({ alg => 'RS384', kid => 'k1' }, { iss => 'app-j',
    sub => 'app-j', aud => 'https://as/token', jti => 'j-1' });
my @part = split /\./, $jwt;

for my $case (['assertion trailing bytes', "$part[0].$part[1]!!.$part[2]"],
    ['assertion padded', "$part[0].$part[1]==.$part[2]"])
{
    my ($name, $assertion) = @$case;
    my $code = "c-$name" =~ s/ /-/gr;

    $r = token($code, undef, form_encode(grant_type => 'authorization_code',
        code => $code, client_assertion_type =>
        'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion => $assertion));
    is($r->status, 200, "$name: token issued");

    my %e = %{ access_entry($t, $code) };
    is($e{app}, 'app-j', "$name: the app is named");
    is($e{identity}, 'proven', "$name: the app is proven");
}

# so the app's writes count, and suspend it

is(http_req($port, 'DELETE', '/fhir/r4/Patient/m-1', headers =>
    [Authorization => "Bearer AT-c-trailing-bytes"])->status, 405,
    "write $_ refused") for 1 .. 2;

is(http_get($port, '/fhir/r4/Patient/m-1',
    Authorization => 'Bearer AT-c-a-dot-inside')->status, 401,
    'app-n suspended by the writes of its tokens');

# a suspended app pads its refresh request past 64 KiB

my $basic = 'Basic ' . encode_base64('app-p:p-secret', '');

is(token('p', $basic, 'grant_type=authorization_code&code=c-p')->status,
    200, 'token of app-p');
is(http_req($port, 'DELETE', '/fhir/r4/Patient/m-1', headers =>
    [Authorization => 'Bearer AT-c-p'])->status, 405, "app-p write $_")
    for 1 .. 2;
is(http_get($port, '/fhir/r4/Patient/m-1', Authorization => 'Bearer AT-c-p')
    ->status, 401, 'app-p suspended');
is(token('p-refresh', $basic, 'grant_type=refresh_token&refresh_token=RT-c-p')
    ->status, 401, 'refresh of app-p refused');

$r = token('padded', $basic, 'grant_type=refresh_token&refresh_token=RT-c-p'
    . '&pad=' . ('x' x 70000));
is($r->status, 413, 'padded refresh of a suspended app refused');
is(scalar(grep { ($_->{headers}{'x-test-id'} // '') eq 'padded' }
    $t->upstream_requests('as')), 0,
    'padded refresh never reaches the server');

$t->done_testing;

###############################################################################
