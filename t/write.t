#!/usr/bin/perl

# The FHIR API is read-only: writes, method overrides, WebDAV and
# unknown methods are refused with 405 (or vetting_write_status) and an
# OperationOutcome, before the FHIR server sees them; reads, searches
# and paging sent as POST pass, and so do listed operations and, when
# allowed, batches of reads.  Every refusal of a proven app counts.

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
worker_processes 2;

http {
    %%HTTP%%
    %%FORMAT%%
    access_log %%PREFIX%%/vetting.log vetting;

    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        server_name localhost;

        vetting_rule write threshold=3 window=1h action=block;

        location /token {
            vetting_endpoint token;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /authorize {
            vetting_endpoint authorize;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /fhir/r4 {
            vetting_endpoint fhir;
            vetting_read_operations everything;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /batch/r4 {
            vetting_endpoint fhir;
            vetting_batch_reads on;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /strict/r4 {
            vetting_endpoint fhir;
            vetting_write_status 403;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /strip/r4 {
            vetting_endpoint fhir;
            vetting_method_override strip;
            add_header X-Seen-UA $http_user_agent always;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }
}
EOF

$t->run_nginx;

my $port = $t->port('nginx');
my $form = 'application/x-www-form-urlencoded';
my $fhir = 'application/fhir+json';
my (@refused, @passed, $r);

# sends a request named $id; headers as a list of pairs

sub req {
    my ($id, $method, $uri, %o) = @_;

    return http_req($port, $method, $uri,
        headers => [@{ $o{headers} // [] }, 'X-Test-Id' => $id],
        body => $o{body});
}

sub seen {
    my ($id) = @_;

    return grep { ($_->{headers}{'x-test-id'} // '') eq $id }
        $t->upstream_requests('fhir');
}

# a refusal of a write: status, Allow, OperationOutcome

sub refused {
    my ($r, $name, $status) = @_;

    is($r->status, $status // 405, "$name refused");
    is($r->header('Allow'), 'GET, HEAD, OPTIONS', "$name allow");
    is($r->header('Content-Type'), $fhir, "$name content type");

    my $j = $r->json // {};
    my $issue = $j->{issue}[0] // {};

    is($j->{resourceType}, 'OperationOutcome', "$name outcome");
    is($issue->{severity}, 'error', "$name severity");
    is($issue->{code}, 'forbidden', "$name code");
    is($issue->{details}{coding}[0]{code}, 'MSG_OP_NOT_ALLOWED',
        "$name details");
    is($issue->{details}{coding}[0]{system},
        'http://terminology.hl7.org/CodeSystem/operation-outcome',
        "$name details system");
}

# writes

for my $case (
    ['create', 'POST', '/fhir/r4/Observation', $fhir,
        '{"resourceType":"Observation","status":"final"}'],
    ['update', 'PUT', '/fhir/r4/Patient/m-12345', $fhir,
        '{"resourceType":"Patient","id":"m-12345"}'],
    ['conditional update', 'PUT', '/fhir/r4/Patient?identifier=x|1', $fhir,
        '{"resourceType":"Patient"}'],
    ['patch', 'PATCH', '/fhir/r4/Coverage/cov-1',
        'application/json-patch+json',
        '[{"op":"replace","path":"/status","value":"cancelled"}]'],
    ['delete', 'DELETE', '/fhir/r4/ExplanationOfBenefit/eob-98765'],
    ['conditional delete', 'DELETE', '/fhir/r4/Observation?patient=m-1'],
    ['unlisted operation', 'POST', '/fhir/r4/Patient/m-1/$export', $fhir,
        '{"resourceType":"Parameters"}'],
    ['unlisted system operation', 'POST', '/fhir/r4/$export'],
)
{
    my ($name, $method, $uri, $type, $body) = @$case;

    $r = req($name, $method, $uri, body => $body,
        headers => [defined $type ? ('Content-Type' => $type) : ()]);
    refused($r, $name);
    push @refused, $name;
}

like($r->json->{issue}[0]{diagnostics},
    qr/^POST is not allowed here: the Patient Access API is read-only$/,
    'diagnostics name the method');

$r = req('write 403', 'PUT', '/strict/r4/Patient/m-1',
    headers => ['Content-Type' => $fhir], body => '{}');
refused($r, 'write 403', 403);
push @refused, 'write 403';

$r = req('operation 403', 'POST', '/strict/r4/Patient/m-1/$everything');
refused($r, 'unlisted everything', 403);
push @refused, 'operation 403';

# reads

for my $case (
    ['get', 'GET', '/fhir/r4/Patient/m-12345'],
    ['head', 'HEAD', '/fhir/r4/Patient/m-12345'],
    ['options', 'OPTIONS', '/fhir/r4/metadata'],
    ['get operation', 'GET', '/fhir/r4/Patient/m-1/$export'],
    ['type search', 'POST', '/fhir/r4/ExplanationOfBenefit/_search', $form,
        'patient=m-12345&_count=50'],
    ['system search', 'POST', '/fhir/r4/_search', $form,
        '_type=Coverage&patient=m-12345'],
    ['compartment search', 'POST', '/fhir/r4/Patient/m-1/Coverage/_search',
        $form . '; charset=UTF-8', 'status=active'],
    ['paging query', 'POST', '/fhir/r4?_getpages=0f8c2a&_getpagesoffset=50'],
    ['paging form', 'POST', '/fhir/r4', $form,
        '_getpages=0f8c2a&_getpagesoffset=50&_count=50'],
    ['paging form slash', 'POST', '/fhir/r4/', $form, '_getpages=0f8c2a'],
    ['listed everything', 'POST', '/fhir/r4/Patient/m-1/$everything', $fhir,
        '{"resourceType":"Parameters"}'],
    ['listed everything form', 'POST', '/fhir/r4/Patient/m-1/$everything',
        $form, '_since=2025-01-01T00%3A00%3A00Z'],
)
{
    my ($name, $method, $uri, $type, $body) = @$case;

    $r = req($name, $method, $uri, body => $body,
        headers => [defined $type ? ('Content-Type' => $type) : ()]);

    is($r->status, 200, "$name passes");

    my ($up) = seen($name);
    is($up->{method} // '', $method, "$name reaches the server");
    is($up->{body} // '', $body // '', "$name body unchanged")
        if defined $body;

    push @passed, $name;
}

# bundles to the base

my $reads = '{"resourceType":"Bundle","type":"batch","entry":['
    . '{"request":{"method":"GET","url":"Patient/m-1"}},'
    . '{"request":{"method":"HEAD","url":"Coverage?patient=m-1"}}]}';
my $mixed = '{"resourceType":"Bundle","type":"batch","entry":['
    . '{"request":{"method":"GET","url":"Patient/m-1"}},'
    . '{"request":{"method":"PUT","url":"Patient/m-1"},'
    . '"resource":{"resourceType":"Patient","id":"m-1"}}]}';
my $tx = '{"resourceType":"Bundle","type":"transaction","entry":['
    . '{"request":{"method":"GET","url":"Patient/m-1"}}]}';
my $sneaky = '{"resourceType":"Bundle","type":"transaction","entry":['
    . '{"fullUrl":"urn:x?a=1&_getpages&b","request":{"method":"POST",'
    . '"url":"Patient?x=&_getpages&"},"resource":{"resourceType":'
    . '"Patient"}}]}';

for my $case (
    ['batch of reads', '/batch/r4', $reads, 1],
    ['batch of reads slash', '/batch/r4/', $reads, 1],
    ['batch of reads not allowed', '/fhir/r4', $reads, 0],
    ['batch with a put', '/batch/r4', $mixed, 0],
    ['transaction of reads', '/batch/r4', $tx, 0],
    ['transaction', '/fhir/r4', $tx, 0],
    ['getpages text in json', '/batch/r4', $sneaky, 0],
    ['getpages text in json no batch', '/fhir/r4', $sneaky, 0],
    ['not a bundle', '/batch/r4', '{"resourceType":"Patient"}', 0],
    ['not json', '/batch/r4', 'entry=GET', 0],
)
{
    my ($name, $uri, $body, $pass) = @$case;

    $r = req($name, 'POST', $uri, headers => ['Content-Type' => $fhir],
        body => $body);

    if ($pass) {
        is($r->status, 200, "$name passes");
        is((seen($name))[0]{body} // '', $body, "$name body unchanged");
        push @passed, $name;

    } else {
        refused($r, $name);
        push @refused, $name;
    }
}

$r = req('getpages text untyped', 'POST', '/batch/r4/', body => $sneaky);
refused($r, 'getpages text untyped');
push @refused, 'getpages text untyped';

$r = req('getpages prefix', 'POST', '/fhir/r4?_getpagesx=1&x=_getpages');
refused($r, 'getpages prefix');
push @refused, 'getpages prefix';

# method overrides

for my $h ('X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override',
    'x-http-method-override')
{
    $r = req("override $h", 'GET', '/fhir/r4/Patient/m-1',
        headers => [$h => 'DELETE']);
    refused($r, "override $h");
    is($r->json->{issue}[0]{diagnostics},
        'method override is not allowed: the API is read-only',
        "override $h diagnostics");
    push @refused, "override $h";

    $r = req("strip $h", 'GET', '/strip/r4/Patient/m-1',
        headers => [$h => 'DELETE', 'X-Other' => 'kept']);
    is($r->status, 200, "strip $h passes");

    my ($up) = seen("strip $h");
    ok($up && !grep({ lc $_->[0] eq lc $h } @{ $up->{header_list} }),
        "strip $h removed");
    is($up->{headers}{'x-other'}, 'kept', "strip $h keeps others");
    push @passed, "strip $h";
}

$r = req('strip all', 'GET', '/strip/r4/Patient/m-1',
    headers => ['X-HTTP-Method-Override' => 'PUT', 'Accept' => $fhir,
        'X-HTTP-Method' => 'PUT', 'X-Method-Override' => 'PUT',
        'X-HTTP-Method-Override' => 'PATCH', 'X-Last' => 'kept']);
is($r->status, 200, 'strip all passes');
my ($up) = seen('strip all');
is(scalar(grep { $_->[0] =~ /method/i } @{ $up->{header_list} }), 0,
    'strip all removed');
is($up->{headers}{'x-last'}, 'kept', 'strip all keeps the last');
is($up->{headers}{accept}, $fhir, 'strip all keeps the first');
push @passed, 'strip all';

# the headers after a stripped one are still what nginx's pointers name

$r = req('strip pointers', 'GET', '/strip/r4/Patient/m-1',
    headers => ['X-HTTP-Method-Override' => 'DELETE',
        'User-Agent' => 'ua-strip', 'X-After' => 'after']);
is($r->header('X-Seen-UA'), 'ua-strip', 'strip keeps $http_user_agent');
($up) = seen('strip pointers');
is($up->{headers}{'user-agent'}, 'ua-strip', 'strip keeps user agent');
is($up->{headers}{'x-after'}, 'after', 'strip keeps the header after');
push @passed, 'strip pointers';

for my $case (
    ['_method query', 'GET', '/fhir/r4/Patient/m-1?_method=DELETE'],
    ['_method query strip', 'GET', '/strip/r4/Patient?a=1&_method=PUT'],
    ['_method form', 'POST', '/fhir/r4/Patient/_search', $form,
        'patient=m-1&_method=DELETE'],
    ['_method form paging', 'POST', '/fhir/r4', $form,
        '_getpages=1&_method=DELETE'],
)
{
    my ($name, $method, $uri, $type, $body) = @$case;

    $r = req($name, $method, $uri, body => $body,
        headers => [defined $type ? ('Content-Type' => $type) : ()]);
    refused($r, $name);
    push @refused, $name;
}

# WebDAV and unknown methods

for my $method (qw(PROPFIND PROPPATCH MKCOL COPY MOVE LOCK UNLOCK FOO)) {
    $r = req($method, $method, '/fhir/r4/Patient/m-1',
        headers => [$method eq 'PROPFIND' ? ('Content-Type' =>
            'application/xml') : (), 'Destination' => '/fhir/r4/x'],
        body => $method eq 'PROPFIND' ? '<propfind xmlns="DAV:"/>' : undef);
    refused($r, $method);
    push @refused, $method;
}

# the OAuth endpoints' own methods are theirs

$r = http_req($port, 'POST', '/authorize',
    headers => ['Content-Type' => $form],
    body => 'response_type=code&client_id=app-x&state=1');
is($r->status, 302, 'authorize post passes');

$r = token_request($port, code => 'c-w', client_id => 'app-w');
is($r->status, 200, 'token post passes');

$r = http_req($port, 'PUT', '/token', body => 'x');
is($r->status, 404, 'token put reaches the server');

# refused requests never reach the server

for my $name (@refused) {
    is(scalar(seen($name)), 0, "$name never reaches the server");
}

for my $name (@passed) {
    is(scalar(seen($name)), 1, "$name reaches the server once");
}

# every refusal of a proven app counts: the third suspends it

$r = req('w-read', 'GET', '/fhir/r4/Patient/m-12345',
    headers => [Authorization => 'Bearer AT-c-w']);
is($r->status, 200, 'proven app reads');
is(access_entry($t, 'w-read')->{identity}, 'proven', 'proven app proven');

$r = req('w-1', 'PUT', '/fhir/r4/Patient/m-12345',
    headers => [Authorization => 'Bearer AT-c-w'], body => '{}');
is($r->status, 405, 'proven write 1 refused');

$r = req('w-2', 'GET', '/fhir/r4/Patient/m-12345',
    headers => [Authorization => 'Bearer AT-c-w',
        'X-HTTP-Method-Override' => 'DELETE']);
is($r->status, 405, 'proven override 2 refused');

$r = req('w-read-2', 'GET', '/fhir/r4/Patient/m-12345',
    headers => [Authorization => 'Bearer AT-c-w']);
is($r->status, 200, 'two refusals do not suspend');

unlike($t->error_log, qr/app "app-w" suspended/, 'not suspended after two');

$r = req('w-3', 'MKCOL', '/fhir/r4/Patient/m-12345',
    headers => [Authorization => 'Bearer AT-c-w']);
is($r->status, 405, 'proven method 3 refused');

like($t->error_log, qr/\Q$_\E/, 'third refusal suspends')
    for 'app "app-w" suspended in scope "*": rule '
    . '"write threshold=3 window=1h action=block" reached (3 events)';

$r = req('w-read-3', 'GET', '/fhir/r4/Patient/m-12345',
    headers => [Authorization => 'Bearer AT-c-w']);
is($r->status, 401, 'suspended app read refused');
is($r->header('WWW-Authenticate'), 'Bearer realm="fhir", '
    . 'error="invalid_token", error_description="the app is suspended '
    . 'pending security review"', 'suspended challenge');
is(outcome_of($r)->{code}, 'security', 'suspended outcome code');
is(scalar(seen('w-read-3')), 0, 'suspended read never reaches the server');

my %e = %{ access_entry($t, 'w-read-3') };
is($e{rule}, 'blocked', 'suspended rule');
is($e{decision}, 'reject', 'suspended decision');

# anonymous refusals counted by address suspend nothing

is(scalar(() = $t->error_log =~ /suspended in scope/g), 1,
    'only the proven app suspended');
like($t->error_log, qr/\Q$_\E/, 'unidentified client not suspended')
    for 'reached by unidentified client "127.0.0.1" (3 events); '
    . 'only apps are suspended';

$t->done_testing;

###############################################################################
