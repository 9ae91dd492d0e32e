#!/usr/bin/perl

# Learning tokens from the token endpoint's responses: every response
# reaches the client byte for byte; a 200 JSON object with an access
# token is learned (split anywhere, any lifetime spelling, the default
# lifetime when the given one is unusable); anything else (not JSON,
# truncated, too deep, too large, wrong types, errors, encoded) is not,
# with a warning, and fast.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Compress::Gzip qw(gzip $GzipError);
use Test::More;
use Test::Vetting;
use Test::Vetting::Fake;
use Time::HiRes qw(sleep time);

###############################################################################

my $t = Test::Vetting->new;

my $realistic = token_json(access => 'AT-real', refresh => 'RT-real',
    patient => 'm-12345');

# expires_in spellings: [text, usable]
my @lifetimes = (
    ['3600', 1], ['3600.0', 1], ['3.6e3', 1], ['36E2', 1], ['"3600"', 1],
    ['-1', 0], ['0', 0], ['1e400', 0], ['9223372036854775808', 0],
    ['1e19', 0], ['"abc"', 0], ['0.5', 0], ['null', 0], ['"3600.0"', 0],
);

my %cases = (
    'c-real' => { body => $realistic },
    'c-pieces' => { body => token_json(access => 'AT-pieces',
        refresh => 'RT-pieces'), chunk => 1, delay => 0.001 },
    'c-chunked' => { body => token_json(access => 'AT-chunked'), te => 1,
        chunk => 3, delay => 0.001 },
    'c-not-json' => { body => "<html><body>Service Unavailable</body>"
        . "</html>\n" },
    'c-truncated' => { body => substr(token_json(access => 'AT-truncated'),
        0, 60) },
    'c-array' => { body => '[' . token_json(access => 'AT-array') . ']' },
    'c-empty' => { body => '' },
    'c-deep' => { body => '{"access_token":"AT-deep","x":' . ('[' x 300000)
        . (']' x 300000) . '}' },
    'c-huge' => { body => token_json(access => 'AT-huge') =~ s/\}$//r
        . ',"padding":"' . ('x' x (1024 * 1024 + 10)) . '"}' },
    'c-number' => { body => token_json(access => 'raw:123') },
    'c-null-token' => { body => token_json(access => 'raw:null') },
    'c-empty-token' => { body => token_json(access => '') },
    'c-null-patient' => { body => token_json(access => 'AT-null-patient',
        patient => undef) },
    'c-number-patient' => { body => token_json(access => 'AT-num-patient',
        patient => 'raw:12345') },
    'c-bad-patient' => { body => token_json(access => 'AT-bad-patient',
        patient => 'Patient/m-1') },
    'c-nested' => { body => '{"data":{"access_token":"AT-nested"},'
        . '"token_type":"Bearer"}' },
    'c-twice' => { body => '{"access_token":"AT-first","token_type":'
        . '"Bearer","access_token":"AT-last","patient":"m-2"}' },
    'c-400' => { status => 400, body => '{"error":"invalid_grant",'
        . '"access_token":"AT-400"}' },
    'c-401' => { status => 401, body => '{"error":"invalid_client",'
        . '"access_token":"AT-401","patient":"m-3"}' },
    'c-500' => { status => 500, body => token_json(access => 'AT-500') },
);

for my $i (0 .. $#lifetimes) {
    $cases{"c-life-$i"} = { body => token_json(access => "AT-life-$i",
        expires_in => $lifetimes[$i][0]) };
}

my $gz;
gzip(\token_json(access => 'AT-gzip'), \$gz) or die "gzip: $GzipError\n";

$cases{'c-gzip'} = { body => $gz,
    headers => ['Content-Encoding' => 'gzip', 'Vary' => 'Accept-Encoding'] };

$t->run_upstream('as', authorization_server(cases => \%cases));
$t->run_upstream('fhir', fhir_server());

$t->write_conf(<<'EOF' =~ s/%%FORMAT%%/vetting_log_format()/er);
%%BASE%%
worker_processes 2;

http {
    %%HTTP%%
    %%FORMAT%%
    access_log %%PREFIX%%/vetting.log vetting;

    vetting_token_lifetime 3s;

    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        server_name localhost;

        location /token {
            vetting_endpoint token;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
            proxy_http_version 1.1;
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
my $n = 0;

# the case's response passes unchanged; returns the warnings logged

sub exchange {
    my ($code, $name) = @_;

    my $case = $cases{$code};
    my $mark = $t->log_size('error.log');
    my $start = time;

    my $r = token_request($port, code => $code, client_id => 'app-tl',
        id => 'tok-' . ++$n);
    my $took = time - $start;

    is($r->status, $case->{status} // 200, "$name status");
    ok($r->body eq $case->{body}, "$name body unchanged")
        or diag('got ' . length($r->body) . ' bytes, expected '
            . length($case->{body}));

    $t->wait_for_log('vetting.log', qr/^t=tok-$n /, 5);

    my @warn = grep { /\[warn\]/ }
        split /\n/, substr($t->read_file('error.log'), $mark);

    return ($r, $took, @warn);
}

# the identity a FHIR request with the token gets

sub identity {
    my ($token) = @_;

    my $id = 'fhir-' . ++$n;

    http_get($port, '/fhir/r4/Patient/m-12345',
        Authorization => "Bearer $token", 'X-Test-Id' => $id);

    return access_entry($t, $id);
}

my ($r, $took, @warn, $e);

my $unusable = 'vetting: token response of app "app-tl" has an unusable '
    . '"expires_in", the default lifetime applies';
my $not_id = 'vetting: token response of app "app-tl" has a "patient" '
    . 'that is not a FHIR id, ignored';
my $encoded = 'vetting: token response is encoded ("gzip"), its tokens '
    . 'are not learned';

# a realistic SMART response

($r, $took, @warn) = exchange('c-real', 'realistic');
is($r->header('Cache-Control'), 'no-store', 'realistic cache-control');
is($r->header('Content-Type'), 'application/json;charset=UTF-8',
    'realistic content type');
is(scalar @warn, 0, 'realistic no warning');

$e = identity('AT-real');
is($e->{identity}, 'proven', 'realistic learned');
is($e->{app}, 'app-tl', 'realistic app');
is($e->{member}, 'm-12345', 'realistic member');

is(identity('RT-real')->{identity}, 'none',
    'refresh token is no access token');
is(identity('AT-realx')->{identity}, 'none', 'other token unknown');

# split anywhere

($r, $took, @warn) = exchange('c-pieces', 'one byte a time');
is(scalar @warn, 0, 'one byte a time no warning');
is(identity('AT-pieces')->{identity}, 'proven', 'one byte a time learned');

($r, $took, @warn) = exchange('c-chunked', 'chunked');
is($r->header('Transfer-Encoding'), 'chunked', 'chunked to the client');
is(scalar @warn, 0, 'chunked no warning');
is(identity('AT-chunked')->{identity}, 'proven', 'chunked learned');

# lifetimes

for my $i (0 .. $#lifetimes) {
    my ($text, $usable) = @{ $lifetimes[$i] };

    ($r, $took, @warn) = exchange("c-life-$i", "expires_in $text");

    if ($usable) {
        is(scalar @warn, 0, "expires_in $text no warning");

    } else {
        is(scalar(grep { /\Q$unusable\E/ } @warn), 1,
            "expires_in $text unusable");
    }

    is(identity("AT-life-$i")->{identity}, 'proven',
        "expires_in $text learned");
}

my $learned_at = time;

# not learned, each with its reason

for my $case (
    ['c-not-json', 'not json', qr/not learned: not JSON/],
    ['c-truncated', 'truncated', qr/not learned: truncated/],
    ['c-array', 'array', qr/not learned: not an object/],
    ['c-empty', 'empty', qr/not learned: empty/],
    ['c-number', 'numeric token', qr/has no access token/],
    ['c-null-token', 'null token', qr/has no access token/],
    ['c-empty-token', 'empty token', qr/has no access token/],
    ['c-nested', 'nested token', qr/has no access token/],
    ['c-huge', 'huge', qr/not learned: too large/],
    ['c-deep', 'deep', qr/not learned: too deep/],
)
{
    my ($code, $name, $re) = @$case;

    ($r, $took, @warn) = exchange($code, $name);

    is(scalar(grep { /vetting: token response of app "app-tl"/ && $_ =~ $re }
        @warn), 1, "$name warning");
    ok($took < 3, "$name fast");
}

is(identity('AT-truncated')->{identity}, 'none', 'truncated not learned');
is(identity('AT-array')->{identity}, 'none', 'array not learned');
is(identity('123')->{identity}, 'none', 'numeric token not learned');
is(identity('AT-nested')->{identity}, 'none', 'nested token not learned');
is(identity('AT-huge')->{identity}, 'none', 'huge not learned');
is(identity('AT-deep')->{identity}, 'none', 'deep not learned');

# members

($r, $took, @warn) = exchange('c-null-patient', 'null patient');
is(scalar(grep { /\Q$not_id\E/ } @warn), 1, 'null patient warning');
$e = identity('AT-null-patient');
is($e->{identity}, 'proven', 'null patient learned');
is($e->{member}, '', 'null patient no member');

($r, $took, @warn) = exchange('c-number-patient', 'numeric patient');
$e = identity('AT-num-patient');
is($e->{identity}, 'proven', 'numeric patient learned');
is($e->{member}, '', 'numeric patient no member');

($r, $took, @warn) = exchange('c-bad-patient', 'reference patient');
$e = identity('AT-bad-patient');
is($e->{identity}, 'proven', 'reference patient learned');
is($e->{member}, '', 'reference patient no member');

($r, $took, @warn) = exchange('c-twice', 'token twice');
is(identity('AT-first')->{identity}, 'none', 'first of two not learned');
$e = identity('AT-last');
is($e->{identity}, 'proven', 'last of two learned');
is($e->{member}, 'm-2', 'last of two member');

# errors and encodings

for my $case (['c-400', 'AT-400'], ['c-401', 'AT-401'], ['c-500', 'AT-500'])
{
    my ($code, $token) = @$case;

    ($r, $took, @warn) = exchange($code, $code);
    is(access_entry($t, "tok-$n")->{identity}, 'claimed',
        "$code leaves the app claimed");
    is(scalar @warn, 0, "$code no warning");
    is(identity($token)->{identity}, 'none', "$code not learned");
}

($r, $took, @warn) = exchange('c-gzip', 'gzip');
is($r->header('Content-Encoding'), 'gzip', 'gzip encoding passes');
is(scalar(grep { /\Q$encoded\E/ } @warn), 1, 'gzip warning');
is(identity('AT-gzip')->{identity}, 'none', 'gzip not learned');

# the default lifetime (3s) applies to the unusable ones only

my $left = $learned_at + 3.2 - time;
sleep $left if $left > 0;

for my $i (0 .. $#lifetimes) {
    my ($text, $usable) = @{ $lifetimes[$i] };

    is(identity("AT-life-$i")->{identity}, $usable ? 'proven' : 'none',
        "expires_in $text " . ($usable ? 'lasts' : 'default lifetime'));
}

is(identity('AT-real')->{identity}, 'proven', 'realistic lasts');

$t->done_testing;

###############################################################################
