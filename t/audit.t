#!/usr/bin/perl

# vetting_audit_log: one FHIR R4 AuditEvent JSON line per refusal (a
# security alert with outcome "4") and per suspension (outcome "0"),
# naming the app, the member, the client address, the gateway and the
# request, with secret query values redacted and no token anywhere.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Test::Vetting;
use Test::Vetting::Fake;
use Time::Local qw(timegm);

###############################################################################

my $t = Test::Vetting->new;

$t->run_upstream('as', authorization_server(patient => 'm-777'));
$t->run_upstream('fhir', fhir_server());

$t->write_conf(<<'EOF');
%%BASE%%
worker_processes 2;

http {
    %%HTTP%%
    vetting_audit_log %%PREFIX%%/audit.jsonl;
    vetting_gateway_id gw-test-1;

    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        server_name localhost;

        vetting_rule write threshold=2 window=1h action=block;

        location /authorize {
            vetting_endpoint authorize;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /token {
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
my $bearer = 'Bearer AT-c-a';
my $dcm = 'http://dicom.nema.org/resources/ontology/DCM';
my $tho = 'http://terminology.hl7.org/CodeSystem/';
my $r;

# nothing is written for what passes

$r = token_request($port, code => 'c-a', client_id => 'app-audit',
    secret => 'cs-audit-secret');
is($r->status, 200, 'token learned');

$r = http_get($port, '/fhir/r4/Patient/m-777', Authorization => $bearer);
is($r->status, 200, 'read passes');

is(scalar $t->audit_events('audit.jsonl'), 0, 'no event for passes');

# the refusals: six, and one suspension after the second write

my $start = time;

$r = http_req($port, 'PUT', '/fhir/r4/Patient/m-777',
    headers => [Authorization => $bearer,
        'Content-Type' => 'application/fhir+json'],
    body => '{"resourceType":"Patient","id":"m-777"}');
is($r->status, 405, 'write 1 refused');

$r = http_req($port, 'DELETE', '/fhir/r4/Patient/m-777?access_token=QS-AT'
    . '&code=QS-CODE&client_secret=QS-CS&refresh_token=QS-RT&_format=json'
    . '&id_token=QS-ID&my_token=QS-MY&x_secret=QS-X',
    headers => [Authorization => $bearer]);
is($r->status, 405, 'write 2 refused');

$r = http_get($port, '/fhir/r4/Coverage?patient=m-777',
    Authorization => $bearer);
is($r->status, 401, 'suspended app refused');

$r = token_request($port, refresh => 'RT-c-a', client_id => 'app-audit',
    secret => 'cs-audit-secret');
is($r->status, 401, 'suspended app token refused');
is($r->body, '{"error":"invalid_client","error_description":"the app is '
    . 'suspended pending security review"}', 'suspended token body');
is($r->header('Pragma'), 'no-cache', 'suspended token pragma');
is($r->header('Cache-Control'), 'no-store', 'suspended token cache');

$r = http_get($port, '/authorize?response_type=code&client_id=app-audit'
    . '&state=st&code_challenge=QS-CHALLENGE');
is($r->status, 403, 'suspended app authorize refused');
is($r->json->{error}, 'unauthorized_client', 'suspended authorize error');
ok(!defined $r->header('Location'), 'suspended authorize no redirect');

$r = http_get($port, '/fhir/r4/Patient/m-1', Authorization => 'Bearer a b');
is($r->status, 400, 'malformed credentials refused');

my @events = $t->audit_events('audit.jsonl');
my $lines = () = ($t->read_file('audit.jsonl') // '') =~ /\n/g;

is($lines, 7, 'seven lines');
is(scalar @events, 7, 'seven events');
is(scalar(grep { $_->{outcome} eq '4' } @events), 6, 'six refusals');
is(scalar(grep { $_->{outcome} eq '0' } @events), 1, 'one suspension');

my ($update, $block, $delete, $blocked, $token, $authorize, $anonymous)
    = @events;

# every event

my %ids;

for my $i (0 .. $#events) {
    my $ev = $events[$i];
    my $n = $i + 1;

    is($ev->{resourceType}, 'AuditEvent', "event $n resource type");
    like($ev->{id}, qr/^gw-test-1-[0-9a-f]+-\d+$/, "event $n id");
    is_deeply($ev->{type}, { system => $dcm, code => '110113',
        display => 'Security Alert' }, "event $n type");
    is($ev->{source}{site}, 'gw-test-1', "event $n site");
    is($ev->{source}{observer}{display}, 'ngx_vetting_module gw-test-1',
        "event $n observer");
    is($ev->{source}{type}[0]{code}, '6', "event $n source type");
    is($ev->{agent}[0]{type}{coding}[0]{code}, '110150',
        "event $n app agent type");
    is($ev->{agent}[0]{requestor}, JSON::PP::false, "event $n app agent");

    my ($y, $mo, $d, $h, $mi, $s) = ($ev->{recorded} // '')
        =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.\d{3}Z$/;
    my $when = defined $s ? timegm($s, $mi, $h, $d, $mo - 1, $y) : 0;
    ok($when >= $start - 1 && $when <= time + 1, "event $n recorded");

    $ids{ $ev->{id} // '' }++;
}

is(scalar keys %ids, 7, 'ids unique');

# a refused update of a proven app

is($update->{outcome}, '4', 'update outcome');
is($update->{action}, 'U', 'update action');
is_deeply($update->{subtype}, [
    { system => 'http://hl7.org/fhir/restful-interaction',
      code => 'update' },
    { system => 'urn:ngx-vetting:reason', code => 'write' },
], 'update subtype');
is($update->{outcomeDesc},
    'PUT is not allowed here: the Patient Access API is read-only',
    'update description');
is_deeply($update->{agent}[0]{who}, { identifier => {
    system => 'urn:ngx-vetting:client-id', value => 'app-audit' } },
    'update app agent');
is_deeply($update->{agent}[0]{network}, { address => '127.0.0.1',
    type => '2' }, 'update network');
is($update->{agent}[1]{type}{coding}[0]{code}, 'PAT', 'update member agent');
is($update->{agent}[1]{type}{coding}[0]{system}, $tho . 'v3-RoleClass',
    'update member agent system');
is($update->{agent}[1]{who}{reference}, 'Patient/m-777',
    'update member reference');
is($update->{agent}[1]{requestor}, JSON::PP::true, 'update member requests');
is(scalar @{ $update->{agent} }, 2, 'update two agents');
is($update->{entity}[0]{what}{reference}, 'Patient/m-777',
    'update patient entity');
is($update->{entity}[1]{description}, 'PUT /fhir/r4/Patient/m-777',
    'update request entity');
is($update->{entity}[1]{role}{code}, '24', 'update request role');
is_deeply($update->{entity}[1]{detail},
    [{ type => 'http-status', valueString => '405' }], 'update status');

# the suspension, written before the refusal that caused it

is($block->{outcome}, '0', 'block outcome');
is($block->{action}, 'E', 'block action');
is_deeply($block->{subtype}, [{ system => 'urn:ngx-vetting:reason',
    code => 'suspended' }], 'block subtype');
is($block->{outcomeDesc}, 'app suspended pending security review',
    'block description');
is($block->{agent}[0]{who}{identifier}{value}, 'app-audit', 'block app');
is($block->{entity}[0]{what}{identifier}{value}, 'app-audit',
    'block entity app');
is($block->{entity}[0]{role}{code}, '11', 'block entity role');

my %detail = map { $_->{type} => $_->{valueString} }
    @{ $block->{entity}[0]{detail} // [] };

is($detail{rule}, 'write threshold=2 window=1h action=block', 'block rule');
is($detail{scope}, '*', 'block scope');
is($detail{evidence}, '2 write events in 3600000 ms (threshold 2), last: '
    . 'DELETE /fhir/r4/Patient/m-777 from 127.0.0.1', 'block evidence');
is($detail{policy}, 'write threshold=2 window=1h action=block',
    'block policy');

# redaction

is($delete->{entity}[1]{description}, 'DELETE /fhir/r4/Patient/m-777'
    . '?access_token=redacted&code=redacted&client_secret=redacted'
    . '&refresh_token=redacted&_format=json&id_token=redacted'
    . '&my_token=redacted&x_secret=redacted', 'query values redacted');
is($delete->{action}, 'D', 'delete action');
is($delete->{subtype}[0]{code}, 'delete', 'delete interaction');

# a suspended app, at each endpoint

is($blocked->{subtype}[-1]{code}, 'blocked', 'blocked reason');
is($blocked->{subtype}[0]{code}, 'search-type', 'blocked interaction');
is($blocked->{entity}[1]{description}, 'GET /fhir/r4/Coverage?patient=m-777',
    'blocked request');
is_deeply($blocked->{entity}[1]{detail},
    [{ type => 'http-status', valueString => '401' }], 'blocked status');

is_deeply($token->{subtype}, [{ system => 'urn:ngx-vetting:reason',
    code => 'blocked' }], 'token subtype');
is($token->{action}, 'E', 'token action');
is($token->{agent}[0]{who}{identifier}{value}, 'app-audit', 'token app');
is($token->{entity}[0]{description}, 'POST /token', 'token request');

is($authorize->{entity}[0]{description}, 'GET /authorize'
    . '?response_type=code&client_id=app-audit&state=st'
    . '&code_challenge=QS-CHALLENGE', 'authorize request');
is_deeply($authorize->{entity}[0]{detail},
    [{ type => 'http-status', valueString => '403' }], 'authorize status');

# an unidentified client

is($anonymous->{subtype}[-1]{code}, 'credentials', 'anonymous reason');
is($anonymous->{agent}[0]{name}, 'unidentified client', 'anonymous agent');
ok(!exists $anonymous->{agent}[0]{who}, 'anonymous no who');
is(scalar @{ $anonymous->{agent} }, 1, 'anonymous one agent');
is($anonymous->{outcomeDesc}, 'malformed Authorization header',
    'anonymous description');

# no secret in the file

my $text = $t->read_file('audit.jsonl');

for my $secret ('AT-c-a', 'RT-c-a', 'cs-audit-secret', 'QS-AT', 'QS-CODE',
    'QS-CS', 'QS-RT', 'QS-ID', 'QS-MY', 'QS-X')
{
    unlike($text, qr/\Q$secret\E/, "no \"$secret\" in the audit log");
}

$t->done_testing;

###############################################################################
