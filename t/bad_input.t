#!/usr/bin/perl

# Bad input: malformed, foreign, oversized and repeated Authorization
# headers; bodies where none is read; token requests whose client
# cannot be read; binary bytes in paths and queries; HTTP/1.0 and
# pipelined requests.  Each gets a definite answer, a log line where
# the module writes one, and no worker crashes (the end checks).

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 ();
use Test::More;
use Test::Vetting;
use Test::Vetting::Fake;

###############################################################################

my $t = Test::Vetting->new;

$t->run_upstream('as', authorization_server());
$t->run_upstream('fhir', fhir_server());

$t->write_conf(<<'EOF' =~ s/%%FORMAT%%/vetting_log_format()/er);
%%BASE%%
worker_processes 2;

http {
    %%HTTP%%
    %%FORMAT%%
    access_log %%PREFIX%%/vetting.log vetting;

    client_body_buffer_size 8k;
    client_max_body_size 4m;

    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        server_name localhost;

        large_client_header_buffers 4 64k;

        location /token {
            vetting_endpoint token;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /fhir/r4/ {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }

    server {
        listen 127.0.0.1:%%PORT:small%%;
        server_name localhost;

        location /fhir/r4/ {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }
}
EOF

$t->run_nginx;

my $port = $t->port('nginx');
my $n = 0;
my ($r, %e, @log);

my $malformed = 'vetting refused request: rule "credentials", status 400, '
    . 'app "" (unidentified), member "": malformed Authorization header';
my $unnamed = 'vetting: token issued to a client the request did not '
    . 'name, not learned';
my $too_large = 'vetting refused request: rule "body", status 413';

# a request and the error log lines it caused

sub send_logged {
    my ($raw, $p) = @_;

    my $mark = $t->log_size('error.log');
    my $r = http($p // $port, $raw);
    my @lines = split /\n/, substr($t->read_file('error.log'), $mark);

    return ($r, @lines);
}

sub raw_get {
    my ($uri, @h) = @_;

    my $raw = "GET $uri HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";

    while (my ($k, $v) = splice @h, 0, 2) {
        $raw .= "$k: $v\r\n";
    }

    return "$raw\r\n";
}

# malformed Bearer credentials: 400 invalid_request

for my $case (['bare scheme', 'Bearer'], ['scheme and space', 'Bearer '],
    ['two tokens', 'Bearer a b'], ['dollar', 'Bearer abc$def'],
    ['quote', 'Bearer abc"def'], ['comma', 'Bearer ab,cd'],
    ['tab', "Bearer\tabc"], ['padding first', 'Bearer ==abc'],
    ['after padding', 'Bearer abc==x'], ['high bytes', "Bearer ab\xff\xfe"],
    ['control byte', "Bearer a\x01b"],
    ['over 16 KiB', 'Bearer ' . ('a' x 16400)])
{
    my ($name, $value) = @$case;

    ($r, @log) = send_logged(raw_get('/fhir/r4/Patient/m-1',
        Authorization => $value, 'X-Test-Id' => "bad-$name"));

    is($r->status, 400, "$name 400");
    is($r->header('WWW-Authenticate'),
        'Bearer realm="fhir", error="invalid_request"', "$name challenge");
    is((outcome_of($r) // {})->{code}, 'invalid', "$name outcome");
    is(scalar(grep { /\[warn\].*\Q$malformed\E/ } @log), 1,
        "$name logged");
}

# other schemes: 401 with a bare challenge

for my $case (['basic', 'Basic dXNlcjpwYXNz'],
    ['digest', 'Digest username="u", realm="r", nonce="n"'],
    ['dpop', 'DPoP eyJhbGciOiJFUzI1NiJ9.e30.sig'],
    ['bearerx', 'Bearerx abc'], ['empty', ''], ['spaces', '   '])
{
    my ($name, $value) = @$case;

    ($r, @log) = send_logged(raw_get('/fhir/r4/Patient/m-1',
        Authorization => $value));

    is($r->status, 401, "$name 401");
    is($r->header('WWW-Authenticate'), 'Bearer realm="fhir"',
        "$name challenge");

    my $issue = outcome_of($r) // {};
    is($issue->{code}, 'login', "$name outcome");
    is($issue->{details}{coding}[0]{code}, 'MSG_AUTH_REQUIRED',
        "$name details");
    is(scalar(grep { /vetting refused request: rule "scheme", status 401/ }
        @log), 1, "$name logged");
}

# well-formed spellings pass

for my $case (['lower-case scheme', 'bearer tok-1'],
    ['two spaces', 'Bearer  tok-1'], ['padding', 'Bearer tok1=='],
    ['b64 characters', 'Bearer a-b.c_d~e+f/g'])
{
    my ($name, $value) = @$case;

    $r = http($port, raw_get('/fhir/r4/Patient/m-1', Authorization => $value,
        'X-Test-Id' => "good-$name"));

    is($r->status, 200, "$name passes");
}

is(access_entry($t, 'good-padding')->{token}, token_id('tok1=='),
    'padding is part of the token');

# headers nginx refuses itself

($r, @log) = send_logged(raw_get('/fhir/r4/Patient/m-1',
    Authorization => 'Bearer ' . ('a' x 9000)), $t->port('small'));
is($r->status, 400, 'header over the buffers refused by nginx');
like($r->body, qr/Request Header Or Cookie Too Large/,
    'header over the buffers answer');

($r, @log) = send_logged("GET /fhir/r4/Patient/m-1 HTTP/1.1\r\n"
    . "Host: localhost\r\nConnection: close\r\nAuthorization: Bearer dup-a\r\n"
    . "Authorization: Bearer dup-b\r\n\r\n");
is($r->status, 400, 'duplicate authorization refused by nginx');
is(scalar(grep { /client sent duplicate header line/ } @log), 1,
    'duplicate authorization logged by nginx');
is(scalar(grep { /vetting/ } @log), 0, 'duplicate never vetted');

# a body on a GET is not read

$r = http_req($port, 'GET', '/fhir/r4/Patient/m-1',
    headers => ['Content-Type' => 'application/x-www-form-urlencoded',
        'X-Test-Id' => 'get-body'],
    body => '_method=DELETE&x=1');
is($r->status, 200, 'get with a body passes');
is((grep { ($_->{headers}{'x-test-id'} // '') eq 'get-body' }
    $t->upstream_requests('fhir'))[0]{body}, '_method=DELETE&x=1',
    'get body passed on');

# token requests whose client cannot be read

my $jwt_head = b64url('{"alg":"RS384"}');

for my $case (
    ['json', '{"grant_type":"authorization_code","code":"c-json",'
        . '"client_id":"app-json"}'],
    ['client_id twice', 'grant_type=authorization_code&code=c-twice'
        . '&client_id=app-a&client_id=app-b'],
    ['bad escape', 'grant_type=authorization_code&code=c-esc'
        . '&client_id=app%ZZ'],
    ['truncated escape', 'grant_type=authorization_code&code=c-tr'
        . '&client_id=app%2'],
    ['nul escape', 'grant_type=authorization_code&code=c-nul'
        . '&client_id=app%00x'],
    ['quote in client_id', 'grant_type=authorization_code&code=c-q'
        . '&client_id=app%22x'],
    ['space in client_id', 'grant_type=authorization_code&code=c-sp'
        . '&client_id=app+x'],
    ['long client_id', 'grant_type=authorization_code&code=c-long'
        . '&client_id=' . ('a' x 129)],
    ['empty client_id', 'grant_type=authorization_code&code=c-empty'
        . '&client_id='],
    ['assertion not a jwt', 'grant_type=authorization_code&code=c-nj'
        . '&client_assertion=not-a-jwt'],
    ['assertion two parts', 'grant_type=authorization_code&code=c-2p'
        . "&client_assertion=$jwt_head." . b64url('{"iss":"app-2p"}')],
    ['assertion bad base64', 'grant_type=authorization_code&code=c-b64'
        . "&client_assertion=$jwt_head.!!!!.sig"],
    ['assertion not json', 'grant_type=authorization_code&code=c-njs'
        . "&client_assertion=$jwt_head." . b64url('iss=app') . '.sig'],
    ['assertion without iss', 'grant_type=authorization_code&code=c-ni'
        . "&client_assertion=$jwt_head." . b64url('{"sub":"app-x"}')
        . '.sig'],
    ['assertion numeric iss', 'grant_type=authorization_code&code=c-ni2'
        . "&client_assertion=$jwt_head." . b64url('{"iss":42}') . '.sig'],
    ['assertion deep', 'grant_type=authorization_code&code=c-deep'
        . "&client_assertion=$jwt_head." . b64url('{"iss":"app-d","x":'
        . ('[' x 100) . (']' x 100) . '}') . '.sig'],
    ['basic without colon', 'grant_type=authorization_code&code=c-bc',
        undef, 'Basic ' . MIME::Base64::encode_base64('app-nocolon', '')],
    ['basic bad base64', 'grant_type=authorization_code&code=c-bb',
        undef, 'Basic !!!!'],
)
{
    my ($name, $body, $re, $auth) = @$case;

    my $id = 'tok-' . ++$n;

    ($r, @log) = send_logged(Test::Vetting::HTTP::request('POST', '/token',
        headers => ['Content-Type' => $name eq 'json' ? 'application/json'
            : 'application/x-www-form-urlencoded', 'X-Test-Id' => $id,
            defined $auth ? (Authorization => $auth) : ()],
        body => $body));

    is($r->status, 200, "$name reaches the server");
    is((grep { ($_->{headers}{'x-test-id'} // '') eq $id }
        $t->upstream_requests('as'))[0]{body}, $body, "$name body unchanged");

    %e = %{ access_entry($t, $id) };
    is($e{app}, '', "$name names no app");
    is($e{identity}, 'none', "$name identity none");

    is(scalar(grep { /\[warn\].*\Q$unnamed\E/ } @log), 1,
        "$name token not learned");
    is(scalar(grep { $_ =~ $re } @log), 1, "$name logged") if $re;
}

# a token request too large to vet is refused: it could hide a client

($r, @log) = send_logged(Test::Vetting::HTTP::request('POST', '/token',
    headers => ['Content-Type' => 'application/x-www-form-urlencoded',
        'X-Test-Id' => 'tok-huge'],
    body => form_encode(grant_type => 'authorization_code',
        code => 'c-huge', client_id => 'app-huge', padding => 'x' x 70000)));

is($r->status, 413, 'huge token request refused');
is($r->json->{error}, 'invalid_request', 'huge token request error');
ok(!(grep { ($_->{headers}{'x-test-id'} // '') eq 'tok-huge' }
    $t->upstream_requests('as')), 'huge token request not passed on');
is(scalar(grep { /\Q$too_large\E/ } @log), 1, 'huge token request logged');

# a body in a temporary file is read

$r = http_req($port, 'POST', '/token',
    headers => ['Content-Type' => 'application/x-www-form-urlencoded',
        'X-Test-Id' => 'in-file'],
    body => form_encode(padding => 'y' x 30000, grant_type =>
        'authorization_code', code => 'c-file', client_id => 'app-file'));
is($r->status, 200, 'body in a file passes');
%e = %{ access_entry($t, 'in-file') };
is($e{app}, 'app-file', 'body in a file app');
is($e{identity}, 'proven', 'body in a file proven');

# binary bytes in paths and queries

for my $case (
    ['control byte in path', "/fhir/r4/Patient/\x01x", 400],
    ['nul escape in path', '/fhir/r4/Patient/%00', 400],
    ['nul in query', "/fhir/r4/Patient?q=\x00", 400],
    ['high bytes in path', "/fhir/r4/Patient/\xff\xfe\x80", 200],
    ['high escapes in path', '/fhir/r4/Patient/a%FF%FEb', 200],
    ['high bytes in query', "/fhir/r4/Patient?name=\xff\xfe&x=%ff%00",
        200],
    ['bad escapes in query', '/fhir/r4/Patient?a=%zz&b=%&c=%f', 200],
    ['dot segments', '/fhir/r4/Patient/../../r4/Patient/m-1', 200],
)
{
    my ($name, $uri, $status) = @$case;

    $r = http($port, raw_get($uri));
    is($r->status, $status, "$name $status");
}

$r = http($port, "PUT /fhir/r4/\xff\xfe\x80/1?\xff=\xfe HTTP/1.1\r\n"
    . "Host: localhost\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc");
is($r->status, 405, 'write to a binary path refused');

$r = http($port, "\xff\xfe /fhir/r4/ HTTP/1.1\r\nHost: localhost\r\n\r\n");
is($r->status, 400, 'binary method refused by nginx');

# HTTP/1.0

$r = http($port, "GET /fhir/r4/metadata HTTP/1.0\r\n\r\n");
is($r->status, 200, 'http/1.0 read passes');

$r = http($port, "DELETE /fhir/r4/Patient/m-1 HTTP/1.0\r\n\r\n");
is($r->status, 405, 'http/1.0 write refused');
is($r->{version}, '1.1', 'http/1.0 answered');

$r = http($port, "POST /fhir/r4/Patient/_search HTTP/1.0\r\n"
    . "Content-Type: application/x-www-form-urlencoded\r\n"
    . "Content-Length: 9\r\n\r\nname=Jane");
is($r->status, 200, 'http/1.0 search passes');

# pipelined requests on one connection

my $big = 'z' x 100000;

my @answers = pipelined(http($port, join '',
    "GET /fhir/r4/Patient/m-1 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "PUT /fhir/r4/Patient/m-1 HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Length: 100000\r\n\r\n$big",
    "POST /fhir/r4/Patient/_search HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: application/x-www-form-urlencoded\r\n"
        . "Content-Length: 13\r\n\r\nname=pipeline",
    "GET /fhir/r4/Patient/m-2 HTTP/1.1\r\nHost: localhost\r\n"
        . "Authorization: Bearer a b\r\n\r\n",
    "POST /token HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: application/x-www-form-urlencoded\r\n"
        . "Content-Length: 51\r\n\r\n"
        . "grant_type=authorization_code&code=c-pipe&client_id",
    "POST /fhir/r4/ HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: application/fhir+json\r\nContent-Length: 2\r\n\r\n{}",
    "GET /fhir/r4/Patient/m-3 HTTP/1.1\r\nHost: localhost\r\n"
        . "Connection: close\r\n\r\n")->raw);

is(scalar @answers, 7, 'pipelined answers');
is_deeply([map { $_->{status} } @answers], [200, 405, 200, 400, 200, 405,
    200], 'pipelined statuses in order');
like($answers[2]{body}, qr{"x-path":"/fhir/r4/Patient/_search"},
    'pipelined search proxied');
like($answers[6]{body}, qr{"x-path":"/fhir/r4/Patient/m-3"},
    'pipelined last proxied');

my @seen = map { $_->{path} } $t->upstream_requests('fhir');
is_deeply([@seen[-3 .. -1]], ['/fhir/r4/Patient/m-1',
    '/fhir/r4/Patient/_search', '/fhir/r4/Patient/m-3'],
    'pipelined refusals never proxied');

$t->done_testing;

###############################################################################

# splits the bytes of several responses
sub pipelined {
    my ($raw) = @_;

    my @out;

    while ($raw =~ /\A(HTTP\/\d\.\d (\d{3})[^\r\n]*\r\n(.*?)\r\n\r\n)/s) {
        my ($head, $status, $headers) = ($1, $2, $3);
        my ($len) = $headers =~ /^Content-Length:\s*(\d+)/mi;
        my $body;

        substr($raw, 0, length $head) = '';

        if (defined $len) {
            $body = substr($raw, 0, $len, '');

        } elsif ($headers =~ /^Transfer-Encoding:\s*chunked/mi) {
            ($body, my $done) = Test::Vetting::HTTP::dechunk($raw);
            $raw =~ s/\A.*?\r\n0\r\n\r\n//s;

        } else {
            ($body, $raw) = ($raw, '');
        }

        push @out, { status => $status, body => $body };
    }

    return @out;
}

###############################################################################
