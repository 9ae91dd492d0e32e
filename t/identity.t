#!/usr/bin/perl

# Who stands behind a request: the app named at the authorization
# endpoint (claimed), the client of a token request (HTTP Basic, form
# client_id, client assertion issuer), proven once the authorization
# server answered 200, and the app and member of a learned Bearer token
# on the FHIR API.  Naming a client id never counts toward a rule.

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

my $leak = 'AT-leaked-in-an-error-body';

$t->run_upstream('as', authorization_server(patient => 'm-12345', cases => {
    'c-400' => { status => 400, body => '{"error":"invalid_grant",'
        . '"access_token":"' . $leak . '"}' },
    'c-401' => { status => 401,
        headers => ['WWW-Authenticate' => 'Basic realm="as"'],
        body => '{"error":"invalid_client","access_token":"' . $leak
            . '"}' },
}));
$t->run_upstream('fhir', fhir_server());

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

        vetting_rule write threshold=1 window=1h action=block;

        location /oauth2/authorize {
            vetting_endpoint authorize;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /oauth2/token {
            vetting_endpoint token;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /fhir/r4/ {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }
}
EOF

$t->run_nginx;

my $port = $t->port('nginx');
my (%e, $r);

# authorization endpoint: the query names the app, nothing proves it

$r = http_get($port, '/oauth2/authorize?response_type=code&client_id=app-7f3c'
    . '&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb&scope=launch%2F'
    . 'patient+openid&state=st-1&aud=https%3A%2F%2Fapi.example%2Ffhir%2Fr4'
    . '&code_challenge=E9Melhoa2Owv&code_challenge_method=S256',
    'X-Test-Id' => 'authorize');

is($r->status, 302, 'authorize passes');
is($r->header('Location'), 'https://app.example.com/cb?code=code-app-7f3c'
    . '&state=st-1', 'authorize redirect unchanged');

%e = %{ access_entry($t, 'authorize') };
is($e{app}, 'app-7f3c', 'authorize app');
is($e{identity}, 'claimed', 'authorize identity claimed');
is($e{endpoint}, 'authorize', 'authorize endpoint');
is($e{decision}, 'pass', 'authorize decision');
is($e{member}, '', 'authorize no member');

$r = http_get($port, '/oauth2/authorize?client_id=my%3Aapp%2F1&state=s',
    'X-Test-Id' => 'authorize-pct');
is(access_entry($t, 'authorize-pct')->{app}, 'my:app/1',
    'authorize client_id percent-decoded');

$r = http_get($port, '/oauth2/authorize?response_type=code&state=s',
    'X-Test-Id' => 'authorize-none');
is($r->status, 302, 'authorize without client_id passes');
%e = %{ access_entry($t, 'authorize-none') };
is($e{app}, '', 'authorize without client_id no app');
is($e{identity}, 'none', 'authorize without client_id identity none');

# token endpoint, client_secret_basic: id and secret form-encoded

$r = token_request($port, uri => '/oauth2/token', code => 'c-basic',
    basic => ['app:basic/1', 'b-s3cr3t:+/'], id => 'basic');

is($r->status, 200, 'basic token 200');
is($r->body, token_json(access => 'AT-c-basic', refresh => 'RT-c-basic',
    patient => 'm-12345'), 'basic token body unchanged');

%e = %{ access_entry($t, 'basic') };
is($e{app}, 'app:basic/1', 'basic app percent-decoded');
is($e{identity}, 'proven', 'basic identity proven after 200');
is($e{member}, 'm-12345', 'basic member from patient');
is($e{endpoint}, 'token', 'basic endpoint');

is(($t->upstream_requests('as'))[-1]{headers}{authorization},
    basic_auth('app:basic/1', 'b-s3cr3t:+/'),
    'basic credentials reach the server unchanged');

# client_secret_post

$r = token_request($port, uri => '/oauth2/token', code => 'c-post',
    client_id => 'app-post', secret => 'p-s3cr3t', id => 'post');

is($r->status, 200, 'post token 200');
%e = %{ access_entry($t, 'post') };
is($e{app}, 'app-post', 'post app');
is($e{identity}, 'proven', 'post identity proven');

# private_key_jwt: the issuer of an unsigned but well-formed assertion

my $assertion = jws({ alg => 'RS384', kid => 'key-1', typ => 'JWT' },
    { iss => 'app-jwt', sub => 'app-jwt', aud => 'https://as/token',
      exp => time + 300, jti => 'jti-1' });

$r = token_request($port, uri => '/oauth2/token', code => 'c-jwt',
    assertion => $assertion, id => 'jwt');

is($r->status, 200, 'jwt token 200');
%e = %{ access_entry($t, 'jwt') };
is($e{app}, 'app-jwt', 'jwt app from iss');
is($e{identity}, 'proven', 'jwt identity proven');

$r = token_request($port, uri => '/oauth2/token', code => 'c-jwt-sub',
    assertion => jws({ alg => 'ES384' }, { iss => 'app-a', sub => 'app-b' }),
    id => 'jwt-sub');

%e = %{ access_entry($t, 'jwt-sub') };
is($e{app}, '', 'jwt with sub other than iss names no app');
is($e{identity}, 'none', 'jwt with sub other than iss identity none');
like($t->error_log, qr/\Q$_\E/, 'token of an unnamed client not learned')
    for 'token issued to a client the request did not name, not learned';

# a code learned at the authorization endpoint names its app

$r = token_request($port, uri => '/oauth2/token', code => 'code-app-7f3c',
    id => 'code-only');

is($r->status, 200, 'code-only token 200');
%e = %{ access_entry($t, 'code-only') };
is($e{app}, 'app-7f3c', 'code-only app from the learned code');
is($e{identity}, 'proven', 'code-only identity proven');

# the FHIR API: a learned token carries its app and member

for my $case (['basic', 'AT-c-basic', 'app:basic/1'],
    ['post', 'AT-c-post', 'app-post'], ['jwt', 'AT-c-jwt', 'app-jwt'],
    ['code-only', 'AT-code-app-7f3c', 'app-7f3c'])
{
    my ($name, $token, $app) = @$case;

    $r = http_get($port, '/fhir/r4/Patient/m-12345',
        Authorization => "Bearer $token", 'X-Test-Id' => "fhir-$name");

    is($r->status, 200, "fhir $name read passes");

    %e = %{ access_entry($t, "fhir-$name") };
    is($e{app}, $app, "fhir $name app");
    is($e{member}, 'm-12345', "fhir $name member");
    is($e{identity}, 'proven', "fhir $name identity proven");
    is($e{token}, token_id($token), "fhir $name token id");
    is($e{endpoint}, 'fhir', "fhir $name endpoint");
    is($e{interaction}, 'read', "fhir $name interaction");
}

is(length token_id('x'), 12, 'token id is 12 hex digits');

# a refresh token learned with the app names it, and is learned again

$r = token_request($port, uri => '/oauth2/token', refresh => 'RT-c-post',
    id => 'refresh');

is($r->status, 200, 'refresh 200');
%e = %{ access_entry($t, 'refresh') };
is($e{app}, 'app-post', 'refresh app from the learned refresh token');
is($e{identity}, 'proven', 'refresh identity proven');

$r = http_get($port, '/fhir/r4/Coverage?patient=m-12345',
    Authorization => 'Bearer AT-RT-c-post', 'X-Test-Id' => 'fhir-refresh');
%e = %{ access_entry($t, 'fhir-refresh') };
is($e{app}, 'app-post', 'refreshed token app');
is($e{identity}, 'proven', 'refreshed token proven');
is($e{interaction}, 'search-type', 'refreshed token interaction');

# an unknown token passes to the FHIR server, which knows its tokens

$r = http_get($port, '/fhir/r4/Patient/m-1',
    Authorization => 'Bearer unknown-token-1', 'X-Test-Id' => 'unknown');

is($r->status, 200, 'unknown token passes');
is(($t->upstream_requests('fhir'))[-1]{headers}{authorization},
    'Bearer unknown-token-1', 'unknown token reaches the upstream');

%e = %{ access_entry($t, 'unknown') };
is($e{identity}, 'none', 'unknown token identity none');
is($e{app}, '', 'unknown token no app');
is($e{member}, '', 'unknown token no member');
is($e{token}, token_id('unknown-token-1'), 'unknown token id');

$r = http_get($port, '/fhir/r4/metadata', 'X-Test-Id' => 'anonymous');
is($r->status, 200, 'no token passes');
%e = %{ access_entry($t, 'anonymous') };
is($e{identity}, 'none', 'no token identity none');
is($e{token}, '', 'no token no token id');
is($e{interaction}, 'capabilities', 'metadata interaction');

# naming a client id never counts: writes with unknown tokens, calls to
# the authorization endpoint, failed token requests

for my $n (1 .. 3) {
    $r = http_req($port, 'PUT', '/fhir/r4/Patient/m-1',
        headers => [Authorization => "Bearer not-learned-$n",
            'Content-Type' => 'application/fhir+json',
            'X-Test-Id' => "unknown-write-$n"],
        body => '{"resourceType":"Patient","id":"m-1"}');
    is($r->status, 405, "write $n with an unknown token refused");
}

%e = %{ access_entry($t, 'unknown-write-3') };
is($e{identity}, 'none', 'unknown write identity none');
is($e{decision}, 'reject', 'unknown write decision');
is($e{rule}, 'write', 'unknown write rule');

like($t->error_log, qr/\Q$_\E/, 'unidentified client not suspended')
    for 'rule "write threshold=1 window=1h action=block" reached by '
    . 'unidentified client "127.0.0.1" (1 events); only apps are suspended';

for my $n (1 .. 3) {
    http_get($port, "/oauth2/authorize?client_id=app-post&state=$n");
}

$r = token_request($port, uri => '/oauth2/token', code => 'c-400',
    client_id => 'app-post', secret => 'wrong-secret-1', id => 'fail-400');

is($r->status, 400, 'failed token request 400');
%e = %{ access_entry($t, 'fail-400') };
is($e{app}, 'app-post', 'failed token request app');
is($e{identity}, 'claimed', 'failed token request 400 not proven');

$r = token_request($port, uri => '/oauth2/token', code => 'c-401',
    basic => ['app-basic-401', 'wrong-secret-2'], id => 'fail-401');

is($r->status, 401, 'failed token request 401');
is($r->header('WWW-Authenticate'), 'Basic realm="as"',
    'server challenge passes');
%e = %{ access_entry($t, 'fail-401') };
is($e{app}, 'app-basic-401', 'failed basic request app');
is($e{identity}, 'claimed', 'failed token request 401 not proven');

$r = http_get($port, '/fhir/r4/Patient/m-1',
    Authorization => "Bearer $leak", 'X-Test-Id' => 'leaked');
%e = %{ access_entry($t, 'leaked') };
is($e{identity}, 'none', 'token in an error response not learned');
is($e{app}, '', 'token in an error response names no app');

# the app named all along is not suspended: one proven write would do it

$r = http_get($port, '/fhir/r4/Patient/m-12345',
    Authorization => 'Bearer AT-c-post', 'X-Test-Id' => 'still-reads');
is($r->status, 200, 'named app still reads');
is(access_entry($t, 'still-reads')->{decision}, 'pass',
    'named app decision pass');

unlike($t->error_log, qr/suspended in scope/, 'nothing suspended');

$r = http_req($port, 'DELETE', '/fhir/r4/Patient/m-12345',
    headers => [Authorization => 'Bearer AT-c-jwt',
        'X-Test-Id' => 'proven-write']);
is($r->status, 405, 'proven write refused');
like($t->error_log, qr/\Q$_\E/, 'one proven write suspends')
    for 'app "app-jwt" suspended in scope "*": rule '
    . '"write threshold=1 window=1h action=block" reached (1 events)';

$r = http_get($port, '/fhir/r4/Patient/m-12345',
    Authorization => 'Bearer AT-c-jwt', 'X-Test-Id' => 'suspended-read');
is($r->status, 401, 'suspended app refused');
is(access_entry($t, 'suspended-read')->{rule}, 'blocked',
    'suspended app rule');

$r = http_get($port, '/fhir/r4/Patient/m-12345',
    Authorization => 'Bearer AT-c-post', 'X-Test-Id' => 'other-reads');
is($r->status, 200, 'other app unaffected');

# no token, secret or assertion in any log

$t->stop_nginx;

my $logs = join "\n", $t->error_log, $t->access_log,
    $t->read_file('vetting.log') // '';

for my $secret ('AT-c-basic', 'RT-c-basic', 'AT-c-post', 'RT-c-post',
    'AT-c-jwt', 'AT-code-app-7f3c', 'AT-RT-c-post', 'unknown-token-1',
    'not-learned-1', $leak, 'b-s3cr3t', 'p-s3cr3t', 'wrong-secret-1',
    'wrong-secret-2', $assertion, (split /\./, $assertion)[1],
    basic_auth('app:basic/1', 'b-s3cr3t:+/') =~ s/^Basic //r,
    'code-app-7f3c', 'c-basic')
{
    my $name = length $secret > 24 ? substr($secret, 0, 20) . '...'
        : $secret;

    unlike($logs, qr/\Q$secret\E/, "no \"$name\" in the logs");
}

$t->done_testing;

###############################################################################
